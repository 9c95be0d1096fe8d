import { studiesInUrl } from './compareLocation.js';

const CHECKS_PER_STUDY = 3;
// OHIF's side panel drops an activation that arrives while it re-subscribes (it does so whenever its tabs
// change, e.g. right after a new study list): ask again until the panel says it is on screen.
const RETRIES = 10;

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
 * @param {number} [options.retryMs] - wait between activations until the panel is shown
 */
export default function createPanelOpener({
  getConfig,
  makeClient,
  panelId,
  getSearch = () => globalThis.location?.search || '',
  retryMs = 500,
}) {
  let session = null;
  let keepOpenNext = false;
  let shown = false;

  /** The panel calls this when it mounts: it is on screen, stop activating it. */
  function panelShown() {
    shown = true;
  }

  function keepOpen() {
    keepOpenNext = true;
  }

  function onModeExit() {
    session?.stop();
    session = null;
  }

  function onModeEnter({ servicesManager } = {}) {
    onModeExit();
    const config = getConfig();
    const { displaySetService, panelService } = servicesManager?.services || {};
    const forced = keepOpenNext;
    keepOpenNext = false;
    if (!(config.openByDefault || forced) || !displaySetService || !panelService) {
      return;
    }
    const client = makeClient(config);
    const reading = studiesInUrl(getSearch())[0] || null;
    const abort = new AbortController();
    const tried = new Set();
    const timers = [];
    let done = false;
    shown = false;

    const activate = attempt => {
      if (abort.signal.aborted || shown) {
        return;
      }
      panelService.activatePanel(panelId, true);
      if (attempt < RETRIES) {
        timers.push(setTimeout(() => activate(attempt + 1), retryMs));
      }
    };
    const open = () => {
      if (!done && !abort.signal.aborted) {
        done = true;
        activate(0);
      }
    };

    const consider = displaySets => {
      if (forced && displaySets?.length) {
        open(); // the user was working in the panel: no need to ask the plugin
        return;
      }
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
          .then(open)
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
        timers.forEach(clearTimeout);
        subscription?.unsubscribe?.();
      },
    };
  }

  return { onModeEnter, onModeExit, keepOpen, panelShown };
}
