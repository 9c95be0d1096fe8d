import { test } from 'node:test';
import assert from 'node:assert/strict';
import thumbnailUrl from './thumbnailUrl.js';

test("thumbnails come from the plugin's renderer, never Orthanc's /preview", () => {
  const hit = { instance: 'ab-cd', frame: 0, thumbnail: '/instances/ab-cd/preview' };
  assert.equal(thumbnailUrl(hit, { apiRoot: '/cbmir', orthancRoot: '' }), '/cbmir/thumbnail/ab-cd');
});

test('later frames are named; the API root is followed', () => {
  const hit = { instance: 'ab-cd', frame: 3 };
  assert.equal(thumbnailUrl(hit, { apiRoot: '/pacs/cbmir/' }), '/pacs/cbmir/thumbnail/ab-cd?frame=3');
});

test('absolute URLs the API names are kept; nothing to show gives null', () => {
  assert.equal(thumbnailUrl({ instance: 'x', thumbnail: 'data:image/png;base64,AA' }), 'data:image/png;base64,AA');
  assert.equal(thumbnailUrl({ thumbnail: '/cbmir/thumbnail/y' }, { orthancRoot: '/orthanc/' }), '/orthanc/cbmir/thumbnail/y');
  assert.equal(thumbnailUrl({}), null);
  assert.equal(thumbnailUrl(null), null);
});
