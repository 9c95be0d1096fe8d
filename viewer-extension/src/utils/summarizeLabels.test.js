import { test } from 'node:test';
import assert from 'node:assert/strict';
import summarizeLabels, { DISCLAIMER } from './summarizeLabels.js';

const cases = (...labels) => labels.map(label => ({ label }));

test('majority label first, worded as a count of similar cases', () => {
  const summary = summarizeLabels(cases('glioma', 'meningioma', 'glioma', 'glioma', 'pituitary'));
  assert.equal(summary.total, 5);
  assert.deepEqual(summary.counts[0], { label: 'glioma', count: 3 });
  assert.equal(summary.text, '3 of 5 similar cases are labelled glioma; 1 meningioma; 1 pituitary.');
  assert.equal(summary.disclaimer, DISCLAIMER);
  assert.match(summary.disclaimer, /not a diagnosis/);
});

test('unlabelled cases are counted, never named as a diagnosis', () => {
  const summary = summarizeLabels(cases(null, '', 'glioma', undefined));
  assert.equal(summary.text, '3 of 4 similar cases have no label; 1 glioma.');
});

test('one case reads in the singular', () => {
  assert.equal(summarizeLabels(cases('glioma')).text, '1 of 1 similar case is labelled glioma.');
});

test('no cases', () => {
  const summary = summarizeLabels([]);
  assert.equal(summary.total, 0);
  assert.equal(summary.text, 'No similar cases to summarise.');
});

test('with a label filter on, the labels are not counted as if they were evidence', () => {
  const summary = summarizeLabels(cases('glioma', 'glioma', 'glioma'), { filterLabel: 'glioma' });
  assert.equal(summary.filtered, true);
  assert.doesNotMatch(summary.text, /3 of 3/);
  assert.match(summary.text, /^Label filter on: only cases labelled glioma are shown \(3 cases\)/);
  assert.match(summary.text, /"any"/);
  assert.equal(summary.disclaimer, DISCLAIMER);
  assert.match(summarizeLabels(cases('glioma'), { filterLabel: 'glioma' }).text, /\(1 case\)/);
});

test('an empty filter is no filter', () => {
  const summary = summarizeLabels(cases('glioma', 'meningioma'), { filterLabel: ' ' });
  assert.equal(summary.filtered, false);
  assert.equal(summary.text, '1 of 2 similar cases are labelled glioma; 1 meningioma.');
});
