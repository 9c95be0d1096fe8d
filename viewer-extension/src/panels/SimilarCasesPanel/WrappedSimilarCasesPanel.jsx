import React, { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import CbmirClient from '../../client/CbmirClient.js';
import trackActiveImage from '../../utils/trackActiveImage.js';
import labelsFromStatus from '../../utils/labelsFromStatus.js';
import studyLocation from '../../utils/studyLocation.js';
import resultThumbnailUrl from '../../utils/thumbnailUrl.js';
import compareLocation, { studiesInUrl } from '../../utils/compareLocation.js';
import { initialState, makeRequestKey, panelReducer } from '../../utils/panelState.js';
import SimilarCasesView from './SimilarCasesView.jsx';

/**
 * Binds the panel to OHIF (active viewport and slice, navigation) and to the CBMIR API; the view only
 * renders what it is given.
 */
export default function WrappedSimilarCasesPanel({ servicesManager, commandsManager, panelOpener, config }) {
  const client = useMemo(() => new CbmirClient({ apiRoot: config.apiRoot }), [config.apiRoot]);
  const [image, setImage] = useState(null);
  const [queryImage, setQueryImage] = useState(null);
  const [k, setK] = useState(config.k);
  const [excludeSamePatient, setExcludeSamePatient] = useState(true);
  const [label, setLabel] = useState('');
  const [seenLabels, setSeenLabels] = useState(() => [...(config.labels || [])]);
  const [retryTick, setRetryTick] = useState(0);
  const [state, dispatch] = useReducer(panelReducer, initialState);

  useEffect(() => trackActiveImage(servicesManager.services, setImage), [servicesManager]);
  useEffect(() => panelOpener?.panelShown(), [panelOpener]); // on screen: the opener can stop

  // The label filter offers the model's labels from the start, not only those answers have named.
  useEffect(() => {
    const abort = new AbortController();
    client
      .status({ signal: abort.signal })
      .then(status => setSeenLabels(previous => _union(previous, labelsFromStatus(status))))
      .catch(() => {}); // the similar-cases query reports what is wrong
    return () => abort.abort();
  }, [client]);

  // Scrolling fires a slice event per image: ask only once the slice on screen settles.
  useEffect(() => {
    const timer = setTimeout(() => setQueryImage(image), image ? config.debounceMs : 0);
    return () => clearTimeout(timer);
  }, [image, config.debounceMs]);

  const sopInstanceUid = queryImage?.sopInstanceUid || null;
  useEffect(() => {
    if (!sopInstanceUid) {
      dispatch({ type: 'noImage' });
      return undefined;
    }
    const requestKey = makeRequestKey({ sopInstanceUid, k, excludeSamePatient, label });
    const abort = new AbortController();
    dispatch({ type: 'start', requestKey });
    client
      .similar(sopInstanceUid, { k, excludeSamePatient, label, groupBy: 'study', signal: abort.signal })
      .then(body => {
        dispatch({ type: 'success', requestKey, body, label });
        const labels = body.results.map(hit => hit.label).filter(Boolean);
        setSeenLabels(previous => _union(previous, labels));
      })
      .catch(error => {
        if (error?.name !== 'AbortError') {
          dispatch({ type: 'failure', requestKey, error });
        }
      });
    return () => abort.abort();
  }, [client, sopInstanceUid, k, excludeSamePatient, label, retryTick]);

  // Not indexed yet: ask again while the plugin works through its queue.
  useEffect(() => {
    if (state.status !== 'pending') {
      return undefined;
    }
    const timer = setTimeout(() => setRetryTick(tick => tick + 1), config.pendingRetryMs);
    return () => clearTimeout(timer);
  }, [state, config.pendingRetryMs]);

  const commandsRef = useRef(commandsManager);
  commandsRef.current = commandsManager;
  const [, setNavigations] = useState(0);
  const openerRef = useRef(panelOpener);
  openerRef.current = panelOpener;
  const navigate = useCallback(({ to, href }) => {
    openerRef.current?.keepOpen(); // OHIF rebuilds the side panels on a new study list
    try {
      commandsRef.current.runCommand('navigateHistory', { to });
    } catch (error) {
      console.warn('cbmir: navigateHistory failed, loading the page instead', error);
      window.location.assign(href);
    }
    setNavigations(n => n + 1);
  }, []);

  const thumbnailUrl = useCallback(hit => resultThumbnailUrl(hit, config), [config]);
  // The study being read is the first of the URL's studies; a compared case is the second.
  const studies = studiesInUrl(window.location.search);
  const reading = studies[0] || queryImage?.studyInstanceUid || null;
  const comparing = studies.length > 1 ? { studyInstanceUid: studies[1] } : null;
  const where = () => ({
    pathname: window.location.pathname,
    basename: window.config?.routerBasename || window.PUBLIC_URL || '/',
  });
  const readingSlice = () =>
    queryImage && queryImage.studyInstanceUid === reading
      ? { seriesInstanceUid: queryImage.seriesInstanceUid, sopInstanceUid: queryImage.sopInstanceUid }
      : {};

  // "Compare": the similar case beside the study being read (OHIF's two-study hanging protocol).
  const openHit = hit => {
    const other = {
      studyInstanceUid: hit.study_instance_uid,
      seriesInstanceUid: hit.series_instance_uid,
      sopInstanceUid: hit.sop_instance_uid,
    };
    const location = reading
      ? compareLocation({
          ...where(),
          current: { studyInstanceUid: reading, ...readingSlice() },
          other,
          protocolId: config.compareProtocolId,
        })
      : studyLocation({ ...where(), ...other });
    navigate(location);
  };

  const backToSingle = () => navigate(studyLocation({ ...where(), studyInstanceUid: reading, ...readingSlice() }));


  return (
    <SimilarCasesView
      state={state}
      image={queryImage}
      k={k}
      kChoices={_union(config.kChoices, [k]).sort((a, b) => a - b)}
      excludeSamePatient={excludeSamePatient}
      label={label}
      labels={_union(seenLabels, label ? [label] : []).sort()}
      onKChange={setK}
      onExcludeSamePatientChange={setExcludeSamePatient}
      onLabelChange={setLabel}
      onRetry={() => setRetryTick(tick => tick + 1)}
      onOpen={openHit}
      thumbnailUrl={thumbnailUrl}
      comparing={comparing}
      onBack={backToSingle}
    />
  );
}

function _union(a, b) {
  return [...new Set([...(a || []), ...(b || [])])];
}
