import { test } from 'node:test';
import assert from 'node:assert/strict';
import labelsFromStatus from './labelsFromStatus.js';

test('the model card labels, cleaned', () => {
  const status = { indexed: 3, model: { card: { labels: ['glioma', ' meningioma', '', 7, 'glioma'] } } };
  assert.deepEqual(labelsFromStatus(status), ['glioma', 'meningioma']);
});

test('nothing when the status has no labels', () => {
  assert.deepEqual(labelsFromStatus({ model: { available: false } }), []);
  assert.deepEqual(labelsFromStatus(null), []);
});
