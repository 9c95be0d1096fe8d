import { studiesInUrl } from './compareLocation.js';

const CHECKS_PER_STUDY = 3;

/**
 * Opens the "Similar cases" panel on its own when the study being read has indexed images, so that a
 * radiologist does not have to find it in the side bar. One per extension registration (index.js hands
 * it OHIF's mode life cycle); nothing global.
 *
 * On mode enter it waits for display sets of the study being read (the first of the URL's
 * StudyInstanceUIDs), asks the plugin for one neighbour of a middle slice of at most
 * CHECKS_PER_STUDY of them, and on the first answer with results activates the panel. An image the plugin
 * refuses, has not indexed yet or does not know leaves the panel as it is.
 *
 * @param {object} options
 * @param {() => object} options.getConfig - the extension's config (`openByDefault`, `apiRoot`)
 * @param {(config: object) => {similar: Function}} options.makeClient - a CbmirClient for the config
 * @param {string} options.panelId - what `panelService.activatePanel` takes
 * @param {() => string} [options.getSearch] - the page's query string (tests pass their own)
 */
export default function createPanelOpener({ getConfig, makeClient, panelId, getSearch = () => globalThis.location?.search || '' }) {
  let session = null;

  function onModeExit() {
    session?.stop();
    session = null;
  }

  function onModeEnter({ servicesManager } = {}) {
    onModeExit();
    const config = getConfig();
    const { displaySetService, panelService } = servicesManager?.services || {};
    if (!config.openByDefault || !displaySetService || !panelService) {
      return;
    }
    const client = makeClient(config);
    const reading = studiesInUrl(getSearch())[0] || null;
    const abort = new AbortController();
    const tried = new Set();
    let done = false;

    const consider = displaySets => {
      for (const displaySet of displaySets || []) {
        if (done || tried.size >= CHECKS_PER_STUDY) {
          return;
        }
        const instances = displaySet?.instances || [];
        const sop = instances[Math.floor(instances.length / 2)]?.SOPInstanceUID;
        if (!sop || tried.has(displaySet.displaySetInstanceUID) || (reading && displaySet.StudyInstanceUID !== reading)) {
          continue;
        }
        tried.add(displaySet.displaySetInstanceUID);
        client
          .similar(sop, { k: 1, excludeSamePatient: false, signal: abort.signal })
          .then(() => {
            if (!done && !abort.signal.aborted) {
              done = true;
              panelService.activatePanel(panelId, true);
            }
          })
          .catch(() => {}); // not indexed (yet), not indexable, no model: the panel stays as it is
      }
    };

    const subscription = displaySetService.subscribe(displaySetService.EVENTS.DISPLAY_SETS_ADDED, event =>
      consider(event?.displaySetsAdded)
    );
    consider(displaySetService.getActiveDisplaySets?.());
    session = {
      stop() {
        done = true;
        abort.abort();
        subscription?.unsubscribe?.();
      },
    };
  }

  return { onModeEnter, onModeExit };
}
