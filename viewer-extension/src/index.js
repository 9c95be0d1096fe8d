import { id } from './id.js';
import getPanelModule from './getPanelModule.jsx';
import { setExtensionConfig } from './config.js';

/**
 * OHIF v3 extension "Similar cases": content-based retrieval of brain MRI from the Orthanc CBMIR plugin.
 * Built as an ES module; a stock prebuilt OHIF loads it from a URL in `window.config.extensions`.
 */
const extension = {
  id,
  preRegistration({ appConfig, configuration } = {}) {
    setExtensionConfig(appConfig, configuration);
  },
  getPanelModule,
};

export default extension;
