import React from 'react';
import { ensureStyles } from './styles.js';
import { similarityText, similarityTooltip } from '../../utils/formatPercentile.js';

/** Renders the panel from props only; it knows nothing of OHIF services or of the API. */
export default function SimilarCasesView({
  state,
  image,
  k,
  kChoices,
  excludeSamePatient,
  label,
  labels,
  onKChange,
  onExcludeSamePatientChange,
  onLabelChange,
  onRetry,
  onOpen,
  thumbnailUrl,
  comparing = null,
  onBack,
}) {
  ensureStyles();
  const shown = state.status === 'results' ? state : state.status === 'loading' ? state.previous : null;
  return (
    <div
      className="cbmir-panel"
      data-testid="cbmir-panel"
      data-state={state.status}
      data-query-sop={image?.sopInstanceUid || ''}
    >
      <div className="cbmir-header">
        <div className="cbmir-title">Similar cases</div>
        <div className="cbmir-subtitle" title={image?.sopInstanceUid || ''}>
          {image
            ? `For the slice on screen${image.seriesDescription ? ` (${image.seriesDescription})` : ''}`
            : 'Waiting for an image in the active viewport'}
        </div>
      </div>

      {comparing && (
        <div className="cbmir-compare" data-testid="cbmir-compare" data-study-instance-uid={comparing.studyInstanceUid}>
          <span>Side by side with a similar case.</span>
          <button type="button" className="cbmir-open" data-testid="cbmir-back" onClick={onBack}>
            Back to single study
          </button>
        </div>
      )}

      <div className="cbmir-controls">
        <label className="cbmir-control">
          <span>Cases</span>
          <select data-testid="cbmir-k" value={k} onChange={event => onKChange(Number(event.target.value))}>
            {kChoices.map(choice => (
              <option key={choice} value={choice}>
                {choice}
              </option>
            ))}
          </select>
        </label>
        <label className="cbmir-control">
          <span>Label</span>
          <select data-testid="cbmir-label-filter" value={label} onChange={event => onLabelChange(event.target.value)}>
            <option value="">any</option>
            {labels.map(name => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label className="cbmir-control cbmir-check">
          <input
            type="checkbox"
            data-testid="cbmir-exclude-same-patient"
            checked={excludeSamePatient}
            onChange={event => onExcludeSamePatientChange(event.target.checked)}
          />
          <span>Other patients only</span>
        </label>
      </div>

      <StatusMessage state={state} onRetry={onRetry} />

      {shown && (
        <>
          <div
            className="cbmir-summary"
            data-testid="cbmir-summary"
            data-filtered={shown.summary.filtered ? 'true' : 'false'}
          >
            <div>{shown.summary.text}</div>
            <div className="cbmir-disclaimer">{shown.summary.disclaimer}</div>
          </div>
          <div className="cbmir-legend" title="Hover a case's percentage for its raw cosine similarity">
            "Closer than 99.8 %": the case is more similar to this slice than 99.8 % of the archive.
          </div>
          <ol className={`cbmir-results${state.status === 'loading' ? ' cbmir-stale' : ''}`}>
            {shown.cases.map(hit => (
              <ResultCard
                key={hit.study_instance_uid || hit.sop_instance_uid}
                hit={hit}
                onOpen={onOpen}
                thumbnailUrl={thumbnailUrl}
                compared={!!comparing && comparing.studyInstanceUid === hit.study_instance_uid}
              />
            ))}
          </ol>
        </>
      )}
    </div>
  );
}

/** One similar case: the plugin groups by study (`group_by=study`), so `hit` is that study's best slice. */
function ResultCard({ hit, onOpen, thumbnailUrl, compared }) {
  const src = thumbnailUrl(hit);
  return (
    <li
      className={`cbmir-result${compared ? ' cbmir-compared' : ''}`}
      data-testid="cbmir-result"
      data-compared={compared ? 'true' : 'false'}
      data-label={hit.label ?? ''}
      data-study-instance-uid={hit.study_instance_uid ?? ''}
      data-sop-instance-uid={hit.sop_instance_uid ?? ''}
    >
      <div className="cbmir-thumb">{src ? <img src={src} alt="" /> : null}</div>
      <div className="cbmir-meta">
        <div className="cbmir-row">
          <span className={`cbmir-label${hit.label ? '' : ' cbmir-unlabelled'}`}>{hit.label || 'unlabelled'}</span>
          <span
            className="cbmir-score"
            data-testid="cbmir-similarity"
            data-score={typeof hit.score === 'number' ? hit.score : ''}
            data-percentile={typeof hit.percentile === 'number' ? hit.percentile : ''}
            title={similarityTooltip(hit)}
          >
            {similarityText(hit)}
          </span>
        </div>
        <div className="cbmir-detail">{_formatDate(hit.study_date) || 'no study date'}</div>
        <div className="cbmir-detail" title={hit.series_description || ''}>
          {hit.series_description || 'no series description'}
        </div>
        <div className="cbmir-row">
          <span className="cbmir-detail">
            {hit.patient_id ? `Patient ${hit.patient_id}` : ''}
          </span>
          <button
            type="button"
            className="cbmir-open"
            data-testid="cbmir-open"
            title="Open this case beside the study you are reading (this panel stays open)"
            onClick={() => onOpen(hit)}
          >
            {compared ? 'Shown' : 'Compare'}
          </button>
        </div>
      </div>
    </li>
  );
}

function StatusMessage({ state, onRetry }) {
  const retry = (
    <button type="button" className="cbmir-link" onClick={onRetry}>
      Try again
    </button>
  );
  switch (state.status) {
    case 'idle':
      return <Message kind="info">Scroll to a slice in a viewport to look for similar cases.</Message>;
    case 'loading':
      return <Message kind="info">Looking for similar cases…</Message>;
    case 'empty':
      return <Message kind="info">No similar cases found. Try a larger number of cases or another label.</Message>;
    case 'pending':
      return (
        <Message kind="warn">
          This image is not indexed yet
          {state.pending !== null ? ` (${state.pending} image${state.pending === 1 ? '' : 's'} waiting)` : ''}. The
          panel will ask again shortly. {retry}
        </Message>
      );
    case 'notIndexable':
      return <Message kind="warn">This image cannot be searched: {state.message}</Message>;
    case 'notFound':
      return <Message kind="warn">The retrieval index does not know this image. {retry}</Message>;
    case 'unavailable':
      return <Message kind="error">The retrieval model is not available on the server. {retry}</Message>;
    case 'error':
      return (
        <Message kind="error">
          Could not get similar cases: {state.message} {retry}
        </Message>
      );
    default:
      return null;
  }
}

function Message({ kind, children }) {
  return (
    <div className={`cbmir-message cbmir-${kind}`} data-testid="cbmir-message" role="status">
      {children}
    </div>
  );
}

function _formatDate(date) {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(String(date || ''));
  return match ? `${match[1]}-${match[2]}-${match[3]}` : date || '';
}
