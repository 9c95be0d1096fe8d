import { id as extensionId, version, PANEL_ID } from '../id.js';
import wrapModeWithPanel from './wrapModeWithPanel.js';

const BASE_MODE = '@ohif/mode-longitudinal';

/**
 * Runtime mode for OHIF 3.x before 3.13 (where app-config's customizationService cannot push a panel into
 * the stock modes): the Basic Viewer (longitudinal mode) plus the "Similar cases" panel, at the route
 * `/similar`. Load it as a URL in `window.config.modes`, with the extension in `window.config.extensions`.
 */
const mode = {
  id: '@orthanc-cbmir/mode-similar-cases',
  modeFactory: async ({ modeConfiguration = {}, loadModules } = {}) => {
    if (typeof loadModules !== 'function') {
      // OHIF skips a mode factory that gives nothing; throwing would stop the whole app.
      console.error(`${mode.id}: this OHIF does not hand loadModules to modeFactory; use app-config rightPanels`);
      return null;
    }
    const [base] = await loadModules([BASE_MODE]);
    const instance = base.modeFactory ? await base.modeFactory({ modeConfiguration, loadModules }) : base;
    return wrapModeWithPanel(instance, {
      panelId: PANEL_ID,
      extensionId,
      // Built beside this file (tools/build-extension.mjs): the URL OHIF can import the extension from.
      extensionKey: new URL('./cbmir-extension.js', import.meta.url).pathname,
      extensionVersion: version,
      id: '@orthanc-cbmir/mode-similar-cases',
      routeName: modeConfiguration.routeName || 'similar',
      displayName: modeConfiguration.displayName || 'Similar cases',
    });
  },
};

export default mode;
