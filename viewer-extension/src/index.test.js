import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { PANEL_ID } from './id.js';
import { SIDE_BY_SIDE_ID } from './hangingProtocols/sideBySide.js';

// index.js pulls in JSX: bundle it for node, as the view test does.
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
let extension;

before(async () => {
  const outdir = fs.mkdtempSync(path.join(root, 'node_modules', '.cbmir-index-test-'));
  const outfile = path.join(outdir, 'bundle.cjs');
  try {
    await build({ entryPoints: [path.join(here, 'index.js')], bundle: true, format: 'cjs', platform: 'node', outfile, jsx: 'automatic', loader: { '.js': 'jsx' }, logLevel: 'error' });
    extension = createRequire(import.meta.url)(outfile).default;
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
});

test('the panel has its own icon from OHIF\'s set and a visible name', () => {
  const [panel] = extension.getPanelModule({ servicesManager: { services: {} } });
  assert.equal(`${extension.id}.panelModule.${panel.name}`, PANEL_ID);
  assert.equal(panel.iconName, 'icon-search');
  assert.notEqual(panel.iconName, 'tab-patient-info');
  assert.equal(panel.label, 'Similar cases');
  assert.equal(panel.iconLabel, 'Similar cases');
  // The name must be one OHIF's icon registry knows (else the side bar shows "Missing Icon").
  const dist = path.join(root, 'ohif-dist');
  const app = fs.existsSync(dist) && fs.readdirSync(dist).find(name => /^app\.bundle\..*\.js$/.test(name));
  if (app) {
    assert.match(fs.readFileSync(path.join(dist, app), 'utf8'), new RegExp(`'${panel.iconName}': props =>`));
  }
});

test('the extension hooks the mode life cycle (panel opens by default) and provides the side-by-side protocol', () => {
  assert.equal(typeof extension.onModeEnter, 'function');
  assert.equal(typeof extension.onModeExit, 'function');
  assert.deepEqual(extension.getHangingProtocolModule().map(entry => entry.name), [SIDE_BY_SIDE_ID]);
  extension.onModeEnter({ servicesManager: { services: {} } }); // without the services: nothing happens
  extension.onModeExit();
});
