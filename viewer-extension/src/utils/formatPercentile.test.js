import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPercentile, similarityText, similarityTooltip } from './formatPercentile.js';

test('rounded down, with more digits near the top', () => {
  assert.equal(formatPercentile(100), '100.00');
  assert.equal(formatPercentile(99.97), '99.97');
  assert.equal(formatPercentile(99.9), '99.90');
  assert.equal(formatPercentile(99.89), '99.8');
  assert.equal(formatPercentile(99.0), '99.0');
  assert.equal(formatPercentile(98.99), '98');
  assert.equal(formatPercentile(87.9), '87');
  assert.equal(formatPercentile(0), '0');
});

test('nothing for a missing or bad value; clamped to 0-100', () => {
  for (const value of [null, undefined, NaN, '99', Infinity]) {
    assert.equal(formatPercentile(value), '');
  }
  assert.equal(formatPercentile(120), '100.00');
  assert.equal(formatPercentile(-3), '0');
});

test('the card reads the percentile; the tooltip explains it and keeps the raw cosine', () => {
  const hit = { score: 0.9995312, percentile: 99.83 };
  assert.equal(similarityText(hit), 'closer than 99.8 %');
  const tip = similarityTooltip(hit);
  assert.match(tip, /than 99\.8 % of the images in this archive/);
  assert.match(tip, /Raw cosine similarity of the image embeddings: 0\.999531/);
});

test('an older server without percentiles: the raw cosine', () => {
  assert.equal(similarityText({ score: 0.93 }), 'cosine 0.930');
  assert.match(similarityTooltip({ score: 0.93 }), /no percentile[\s\S]*0\.930000/);
});
