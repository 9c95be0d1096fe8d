import sopFromImageId from './sopFromImageId.js';

const CAPTURE = { capture: true };
const SLICE_EVENTS = [
  'CORNERSTONE_STACK_NEW_IMAGE',
  'CORNERSTONE_VOLUME_NEW_IMAGE',
  'CORNERSTONE_VIEWPORT_NEW_IMAGE_SET',
];

/**
 * Calls `onChange({viewportId, sopInstanceUid, studyInstanceUid, seriesInstanceUid, seriesDescription})`
 * (or `onChange(null)`) whenever the image on screen in the active viewport changes.
 *
 * Cornerstone fires its slice events on each viewport's element without bubbling; a capturing listener on
 * the document sees them all. Active viewport changes come from OHIF's viewportGridService; a slow poll
 * catches what no event announces (a viewport that finished loading before the panel opened).
 *
 * @returns {() => void} undo everything
 */
export default function trackActiveImage(services, onChange, { pollMs = 1000, doc = globalThis.document } = {}) {
  const { viewportGridService, cornerstoneViewportService, displaySetService } = services;
  let last = null;

  const read = imageIdHint => {
    const viewportId = viewportGridService?.getActiveViewportId?.();
    if (!viewportId) {
      return null;
    }
    let imageId = imageIdHint;
    if (!imageId) {
      try {
        imageId = cornerstoneViewportService?.getCornerstoneViewport?.(viewportId)?.getCurrentImageId?.();
      } catch {
        imageId = null;
      }
    }
    const sopInstanceUid = sopFromImageId(imageId);
    if (!sopInstanceUid) {
      return null;
    }
    const displaySet = _displaySetShowing(viewportGridService, displaySetService, viewportId, sopInstanceUid);
    return {
      viewportId,
      sopInstanceUid,
      studyInstanceUid: displaySet?.StudyInstanceUID ?? null,
      seriesInstanceUid: displaySet?.SeriesInstanceUID ?? null,
      seriesDescription: displaySet?.SeriesDescription ?? null,
    };
  };

  const emit = current => {
    const key = current ? `${current.viewportId}|${current.sopInstanceUid}` : null;
    if (key === last) {
      return;
    }
    last = key;
    onChange(current);
  };

  const sync = () => emit(read());

  const onSliceEvent = event => {
    const active = viewportGridService?.getActiveViewportId?.();
    const viewportId = event?.detail?.viewportId;
    if (viewportId && active && viewportId !== active) {
      return;
    }
    const current = read(event.type === 'CORNERSTONE_STACK_NEW_IMAGE' ? event.detail?.imageId : undefined);
    if (current) {
      emit(current);
    }
  };

  SLICE_EVENTS.forEach(type => doc?.addEventListener(type, onSliceEvent, CAPTURE));
  const subscriptions = [];
  const gridEvents = viewportGridService?.EVENTS || {};
  for (const name of ['ACTIVE_VIEWPORT_ID_CHANGED', 'GRID_STATE_CHANGED', 'VIEWPORTS_READY']) {
    if (gridEvents[name] && viewportGridService.subscribe) {
      subscriptions.push(viewportGridService.subscribe(gridEvents[name], () => setTimeout(sync, 0)));
    }
  }
  const timer = pollMs ? setInterval(sync, pollMs) : null;
  sync();

  return () => {
    SLICE_EVENTS.forEach(type => doc?.removeEventListener(type, onSliceEvent, CAPTURE));
    subscriptions.forEach(subscription => subscription?.unsubscribe?.());
    if (timer) {
      clearInterval(timer);
    }
  };
}

function _displaySetShowing(viewportGridService, displaySetService, viewportId, sopInstanceUid) {
  const uids = viewportGridService?.getDisplaySetsUIDsForViewport?.(viewportId) || [];
  const displaySets = uids.map(uid => displaySetService?.getDisplaySetByUID?.(uid)).filter(Boolean);
  return (
    displaySets.find(ds => (ds.instances || []).some(instance => instance.SOPInstanceUID === sopInstanceUid)) ||
    displaySets[0] ||
    null
  );
}
