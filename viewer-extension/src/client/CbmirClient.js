/** An error answer of the CBMIR REST API: HTTP status plus its JSON body (`{"error": ...}`). */
export class CbmirApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = 'CbmirApiError';
    this.status = status;
    this.body = body;
  }
}

/**
 * Client of the plugin's REST API under `/cbmir/` (same origin as the viewer: the browser sends Orthanc's
 * HTTP basic credentials). One method per endpoint; every failure is thrown, never returned.
 */
export default class CbmirClient {
  /**
   * @param {object} [options]
   * @param {string} [options.apiRoot='/cbmir'] - where the plugin's routes are
   * @param {Function} [options.fetch] - the fetch to use (tests pass a fake)
   */
  constructor({ apiRoot = '/cbmir', fetch: fetchImpl } = {}) {
    this.apiRoot = apiRoot.replace(/\/+$/, '');
    this._fetch = fetchImpl || ((...args) => globalThis.fetch(...args));
  }

  /**
   * GET /cbmir/similar/{uid}: the most similar indexed images of `uid` (a SOPInstanceUID or an Orthanc
   * instance id), best first.
   */
  async similar(uid, { k = 10, excludeSamePatient = true, groupBy = 'study', label, modality, signal } = {}) {
    if (!uid) {
      throw new TypeError('similar() needs a SOPInstanceUID or an Orthanc instance id');
    }
    const query = new URLSearchParams({
      k: String(k),
      exclude_same_patient: excludeSamePatient ? 'true' : 'false',
      group_by: groupBy,
    });
    if (label) {
      query.set('label', label);
    }
    if (modality) {
      query.set('modality', modality);
    }
    const body = await this._get(`/similar/${encodeURIComponent(uid)}?${query}`, signal);
    if (!body || !Array.isArray(body.results)) {
      throw new CbmirApiError(200, 'The similar-images answer has no results list', body);
    }
    return body;
  }

  /** GET /cbmir/status: `{indexed, pending, failed, model, index}`. */
  async status({ signal } = {}) {
    return this._get('/status', signal);
  }

  async _get(path, signal) {
    let response;
    try {
      response = await this._fetch(`${this.apiRoot}${path}`, {
        method: 'GET',
        headers: { Accept: 'application/json' },
        credentials: 'same-origin',
        signal,
      });
    } catch (error) {
      if (error?.name === 'AbortError') {
        throw error;
      }
      throw new CbmirApiError(0, `Cannot reach the CBMIR plugin: ${error?.message || error}`);
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = (body && body.error) || text.trim() || `HTTP ${response.status}`;
      throw new CbmirApiError(response.status, message, body);
    }
    if (body === null) {
      throw new CbmirApiError(response.status, 'The CBMIR plugin answered something that is not JSON');
    }
    return body;
  }
}
