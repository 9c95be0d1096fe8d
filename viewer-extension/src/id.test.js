import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { id, version, PANEL_ID } from './id.js';

test('the version is package.json\'s; the panel id is what app-config names', () => {
  const packageJson = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(version, packageJson.version);
  assert.equal(PANEL_ID, `${id}.panelModule.similarCases`);
});
