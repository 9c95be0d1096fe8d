import { test } from 'node:test';
import assert from 'node:assert/strict';
import wrapModeWithPanel from './wrapModeWithPanel.js';

const baseMode = (overrides = {}) => ({
  id: 'longitudinal',
  routeName: 'viewer',
  displayName: 'Basic Viewer',
  extensions: { '@ohif/extension-default': '^3.0.0' },
  isValidMode: () => ({ valid: true }),
  routes: [
    {
      path: 'longitudinal',
      layoutTemplate: ({ location }) => ({
        id: '@ohif/extension-default.layoutTemplateModule.viewerLayout',
        props: { leftPanels: ['studies'], rightPanels: ['measurements'], where: location },
      }),
    },
  ],
  ...overrides,
});
const options = {
  panelId: 'ext.panelModule.similarCases',
  extensionId: 'ext',
  extensionVersion: '0.1.0',
  id: 'similar',
  routeName: 'similar',
  displayName: 'Similar cases',
};

test('adds the panel to every layout and the extension to the dependencies', () => {
  const mode = wrapModeWithPanel(baseMode(), options);
  const layout = mode.routes[0].layoutTemplate({ location: 'here' });
  assert.deepEqual(layout.props.rightPanels, ['measurements', 'ext.panelModule.similarCases']);
  assert.deepEqual(layout.props.leftPanels, ['studies']);
  assert.equal(layout.props.where, 'here');
  assert.equal(mode.extensions.ext, '^0.1.0');
  assert.equal(mode.extensions['@ohif/extension-default'], '^3.0.0');
  assert.equal(mode.id, 'similar');
  assert.equal(mode.routeName, 'similar');
  assert.equal(mode.isValidMode().valid, true);
});

test('the dependency is keyed by the extension URL when given', () => {
  const mode = wrapModeWithPanel(baseMode(), { ...options, extensionKey: '/ohif/cbmir/cbmir-extension.js' });
  assert.equal(mode.extensions['/ohif/cbmir/cbmir-extension.js'], '^0.1.0');
  assert.equal(mode.extensions.ext, undefined);
});

test('does not add the panel twice; copes with a layout without right panels', () => {
  const base = baseMode();
  base.routes.push({ path: 'x', layoutTemplate: () => ({ id: 'l', props: {} }) });
  base.routes[0].layoutTemplate = () => ({ props: { rightPanels: [options.panelId] } });
  const mode = wrapModeWithPanel(base, options);
  assert.deepEqual(mode.routes[0].layoutTemplate().props.rightPanels, [options.panelId]);
  assert.deepEqual(mode.routes[1].layoutTemplate().props.rightPanels, [options.panelId]);
});

test('leaves the base mode untouched and keeps its names by default', () => {
  const base = baseMode();
  const mode = wrapModeWithPanel(base, { ...options, id: undefined, routeName: undefined, displayName: undefined });
  assert.equal(mode.id, 'longitudinal');
  assert.deepEqual(base.routes[0].layoutTemplate({}).props.rightPanels, ['measurements']);
  assert.equal(base.extensions.ext, undefined);
});

test('refuses something that is not a mode', () => {
  assert.throws(() => wrapModeWithPanel({}, options), TypeError);
});
