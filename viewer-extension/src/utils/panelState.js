import summarizeLabels from './summarizeLabels.js';

/**
 * The panel's states:
 * - `idle`: no image on screen to query with
 * - `loading`: a query is in flight
 * - `results`: the similar cases (the plugin's answer, one best slice per study) and their label summary
 * - `empty`: the query worked and found nothing (filters too narrow, or an empty index)
 * - `pending`: the image is known but not indexed yet (409), with the plugin's pending count
 * - `notIndexable`: the image cannot be indexed (422: not a greyscale image, a report, ...)
 * - `notFound`: the image is unknown to the plugin (404)
 * - `unavailable`: the model is not loaded (503)
 * - `error`: anything else
 */
export const initialState = Object.freeze({ status: 'idle', requestKey: null });

/** A stable key of what is asked: answers to an older key are dropped. */
export function makeRequestKey({ sopInstanceUid, k, excludeSamePatient, label }) {
  return JSON.stringify([sopInstanceUid || null, k, !!excludeSamePatient, label || null]);
}

export function panelReducer(state, action) {
  switch (action.type) {
    case 'noImage':
      return initialState;
    case 'start':
      return { status: 'loading', requestKey: action.requestKey, previous: _keptResults(state) };
    case 'success': {
      if (action.requestKey !== state.requestKey) {
        return state;
      }
      const results = action.body?.results || [];
      if (!results.length) {
        return { status: 'empty', requestKey: state.requestKey, query: action.body?.query ?? null };
      }
      // The server's echo of the filter it applied, else the one asked for.
      const filterLabel = action.body?.query?.params?.label ?? action.label ?? null;
      return {
        status: 'results',
        requestKey: state.requestKey,
        query: action.body?.query ?? null,
        cases: results,
        summary: summarizeLabels(results, { filterLabel }),
      };
    }
    case 'failure':
      if (action.requestKey !== state.requestKey) {
        return state;
      }
      return { ...stateForError(action.error), requestKey: state.requestKey };
    default:
      return state;
  }
}

/** Maps an API error (a `CbmirApiError`-like `{status, message, body}`) to a panel state. */
export function stateForError(error) {
  const status = error?.status;
  const body = error?.body || {};
  const message = error?.message || String(error);
  switch (status) {
    case 409:
      return { status: 'pending', pending: _count(body.pending), message };
    case 422:
      return { status: 'notIndexable', message };
    case 404:
      return { status: 'notFound', message };
    case 503:
      return { status: 'unavailable', message };
    default:
      return { status: 'error', httpStatus: status ?? null, message };
  }
}

function _keptResults(state) {
  if (state.status === 'results') {
    return { cases: state.cases, summary: state.summary };
  }
  return state.status === 'loading' ? state.previous : null;
}

function _count(value) {
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : null;
}
