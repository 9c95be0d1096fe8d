import { test } from 'node:test';
import assert from 'node:assert/strict';
import groupResults from './groupResults.js';

const hit = overrides => ({
  instance: 'i',
  sop_instance_uid: '1.1',
  study_instance_uid: '2.1',
  label: 'glioma',
  score: 0.5,
  ...overrides,
});

test('groups hits of one study under its best hit', () => {
  const groups = groupResults([
    hit({ sop_instance_uid: 'a', study_instance_uid: 'S1', score: 0.9 }),
    hit({ sop_instance_uid: 'b', study_instance_uid: 'S2', score: 0.8, label: 'meningioma' }),
    hit({ sop_instance_uid: 'c', study_instance_uid: 'S1', score: 0.7 }),
  ]);
  assert.deepEqual(groups.map(g => g.studyInstanceUid), ['S1', 'S2']);
  assert.deepEqual(groups[0].hits.map(h => h.sop_instance_uid), ['a', 'c']);
  assert.equal(groups[0].best.sop_instance_uid, 'a');
  assert.equal(groups[1].label, 'meningioma');
});

test('orders studies by their best score even when the input is not sorted', () => {
  const groups = groupResults([
    hit({ study_instance_uid: 'S1', score: 0.2 }),
    hit({ study_instance_uid: 'S2', score: 0.6 }),
    hit({ study_instance_uid: 'S1', score: 0.95, sop_instance_uid: 'best' }),
  ]);
  assert.deepEqual(groups.map(g => g.studyInstanceUid), ['S1', 'S2']);
  assert.equal(groups[0].best.sop_instance_uid, 'best');
});

test('hits without a study stay apart; missing label is null', () => {
  const groups = groupResults([hit({ study_instance_uid: null, label: undefined }), hit({ study_instance_uid: '' })]);
  assert.equal(groups.length, 2);
  assert.equal(groups[0].label, null);
});

test('empty or missing input gives no groups', () => {
  assert.deepEqual(groupResults([]), []);
  assert.deepEqual(groupResults(undefined), []);
});
