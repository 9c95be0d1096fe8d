import { test } from 'node:test';
import assert from 'node:assert/strict';
import compareLocation, { COMPARE_PROTOCOL_ID, studiesInUrl } from './compareLocation.js';

const current = { studyInstanceUid: '1.1', seriesInstanceUid: '1.1.1', sopInstanceUid: '1.1.1.5' };
const other = { studyInstanceUid: '2.2', seriesInstanceUid: '2.2.1', sopInstanceUid: '2.2.1.7' };

test('both studies, the query study first, with the comparison protocol and both slices', () => {
  const { to, href } = compareLocation({ pathname: '/ohif/viewer', basename: '/ohif', current, other });
  assert.equal(
    to,
    '/viewer?StudyInstanceUIDs=1.1,2.2&hangingProtocolId=@ohif/hpCompare' +
      '&initialSeriesInstanceUID=1.1.1,2.2.1&initialSOPInstanceUID=1.1.1.5,2.2.1.7'
  );
  assert.equal(href, `/ohif${to}`);
  assert.deepEqual(studiesInUrl(to.slice(to.indexOf('?'))), ['1.1', '2.2']);
  assert.equal(new URLSearchParams(to.slice(to.indexOf('?'))).get('hangingProtocolId'), COMPARE_PROTOCOL_ID);
});

test('keeps the mode route; works with study UIDs only', () => {
  const { to } = compareLocation({
    pathname: '/ohif/similar',
    basename: '/ohif/',
    current: { studyInstanceUid: '1' },
    other: { studyInstanceUid: '2' },
    protocolId: 'site.compare',
  });
  assert.equal(to, '/similar?StudyInstanceUIDs=1,2&hangingProtocolId=site.compare');
});

test('the same study twice is just that study', () => {
  const { to } = compareLocation({ pathname: '/viewer', basename: '/', current, other: { ...other, studyInstanceUid: '1.1' } });
  assert.equal(to, '/viewer?StudyInstanceUIDs=1.1&initialSeriesInstanceUID=2.2.1&initialSOPInstanceUID=2.2.1.7');
});

test('needs both studies', () => {
  assert.throws(() => compareLocation({ pathname: '/viewer', current, other: {} }), TypeError);
});

test('studiesInUrl reads any case, lists and repeats, without duplicates', () => {
  assert.deepEqual(studiesInUrl('?studyinstanceuids=1,2&StudyInstanceUIDs=3&StudyInstanceUIDs=1'), ['1', '2', '3']);
  assert.deepEqual(studiesInUrl(''), []);
});
