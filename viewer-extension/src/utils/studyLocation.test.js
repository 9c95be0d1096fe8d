import { test } from 'node:test';
import assert from 'node:assert/strict';
import studyLocation from './studyLocation.js';

const uids = { studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: '1.2.3.4.5' };

test('under /ohif/ the router path leaves the basename out; the href keeps it', () => {
  const { to, href } = studyLocation({ pathname: '/ohif/viewer', basename: '/ohif/', ...uids });
  assert.equal(
    to,
    '/viewer?StudyInstanceUIDs=1.2.3&initialSeriesInstanceUID=1.2.3.4&initialSOPInstanceUID=1.2.3.4.5'
  );
  assert.equal(href, `/ohif${to}`);
});

test('keeps the mode route the user is in', () => {
  const { to } = studyLocation({ pathname: '/ohif/similar/', basename: '/ohif', studyInstanceUid: '9' });
  assert.equal(to, '/similar?StudyInstanceUIDs=9');
});

test('at the root basename', () => {
  assert.deepEqual(studyLocation({ pathname: '/viewer', basename: '/', studyInstanceUid: '9' }), {
    to: '/viewer?StudyInstanceUIDs=9',
    href: '/viewer?StudyInstanceUIDs=9',
  });
});

test('falls back to the viewer route; a slice needs its series', () => {
  const { to } = studyLocation({ pathname: '/ohif', basename: '/ohif/', studyInstanceUid: '9', sopInstanceUid: '5' });
  assert.equal(to, '/viewer?StudyInstanceUIDs=9');
});

test('needs a study', () => {
  assert.throws(() => studyLocation({ pathname: '/viewer' }), TypeError);
});
