import { test } from 'node:test';
import assert from 'node:assert/strict';
import sopFromImageId from './sopFromImageId.js';

test('wadors image id with a frame', () => {
  const id = 'wadors:http://h:8042/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1';
  assert.equal(sopFromImageId(id), '1.2.3.4');
});

test('wadors image id on a relative root, without a frame', () => {
  assert.equal(sopFromImageId('wadors:/dicom-web/studies/1/series/2/instances/3.44'), '3.44');
});

test('wadouri image id', () => {
  const id = 'wadouri:/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=9.8.7&contentType=application%2Fdicom';
  assert.equal(sopFromImageId(id), '9.8.7');
});

test('anything else gives null', () => {
  for (const id of [undefined, null, '', 'dicomfile:3', 'web:http://x/y.png']) {
    assert.equal(sopFromImageId(id), null);
  }
});
