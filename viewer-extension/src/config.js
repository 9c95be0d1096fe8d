import { SIDE_BY_SIDE_ID } from './hangingProtocols/sideBySide.js';

/**
 * The extension's settings: `window.config.cbmir` in OHIF's app-config, over these defaults.
 *
 * - `apiRoot`: where the plugin's REST routes are (same origin: the browser sends Orthanc's credentials)
 * - `orthancRoot`: Orthanc's REST root, for thumbnail paths the API names without an instance
 * - `k`: how many similar cases to ask for at first; `kChoices`: what the k control offers
 * - `labels`: labels the filter offers before any answer has named them
 * - `debounceMs`: wait for scrolling to settle before asking; `pendingRetryMs`: re-ask while indexing
 * - `openByDefault`: open the panel on its own when the study being read has indexed images
 * - `compareProtocolId`: the hanging protocol "Compare" opens a similar case with, beside the study being
 *   read: the extension's side-by-side protocol (hangingProtocols/sideBySide.js), or e.g. OHIF's
 *   '@ohif/hpCompare'
 */
export const DEFAULTS = Object.freeze({
  apiRoot: '/cbmir',
  orthancRoot: '',
  k: 10,
  kChoices: [5, 10, 20, 50],
  labels: [],
  debounceMs: 250,
  pendingRetryMs: 5000,
  openByDefault: true,
  compareProtocolId: SIDE_BY_SIDE_ID,
});

let preRegistrationConfig = {};

export function setExtensionConfig(appConfig, configuration) {
  preRegistrationConfig = { ...(appConfig?.cbmir || {}), ...(configuration || {}) };
}

export function getExtensionConfig() {
  const fromWindow = (typeof window !== 'undefined' && window.config?.cbmir) || {};
  return { ...DEFAULTS, ...fromWindow, ...preRegistrationConfig };
}
