import { id, PANEL_ID } from './id.js';
import getPanelModule from './getPanelModule.jsx';
import getHangingProtocolModule from './hangingProtocols/sideBySide.js';
import { getExtensionConfig, setExtensionConfig } from './config.js';
import CbmirClient from './client/CbmirClient.js';
import createPanelOpener from './utils/panelOpener.js';

/**
 * OHIF v3 extension "Similar cases": content-based retrieval of brain MRI from the Orthanc CBMIR plugin.
 * Built as an ES module; a stock prebuilt OHIF loads it from a URL in `window.config.extensions`.
 * Its mode life-cycle hooks open the panel when the study being read has indexed images.
 */
const panelOpener = createPanelOpener({
  getConfig: getExtensionConfig,
  makeClient: config => new CbmirClient({ apiRoot: config.apiRoot }),
  panelId: PANEL_ID,
});

const extension = {
  id,
  preRegistration({ appConfig, configuration } = {}) {
    setExtensionConfig(appConfig, configuration);
  },
  onModeEnter(context) {
    panelOpener.onModeEnter(context);
  },
  onModeExit() {
    panelOpener.onModeExit();
  },
  // The panel asks the opener to keep it open across its own "Compare" navigation.
  getPanelModule: managers => getPanelModule({ ...managers, panelOpener }),
  getHangingProtocolModule,
};

export default extension;
