/**
 * Where a result's thumbnail comes from: the plugin's own renderer, `<apiRoot>/thumbnail/<instance>`
 * (`?frame=N` for later frames), which draws every pixel layout the index reads, windowed as the model
 * sees it. Not Orthanc's `/instances/<id>/preview`: Orthanc 1.10 draws some layouts wrongly (8 bits
 * stored in 16 shows two half-width copies). An absolute URL the API names (data:, http:) is kept.
 */
export default function thumbnailUrl(hit, { apiRoot = '/cbmir', orthancRoot = '' } = {}) {
  if (!hit) {
    return null;
  }
  const thumbnail = typeof hit.thumbnail === 'string' ? hit.thumbnail : '';
  if (/^(data:|https?:)/.test(thumbnail)) {
    return thumbnail;
  }
  const api = apiRoot.replace(/\/+$/, '');
  if (hit.instance) {
    const frame = Number.isInteger(hit.frame) && hit.frame > 0 ? `?frame=${hit.frame}` : '';
    return `${api}/thumbnail/${encodeURIComponent(hit.instance)}${frame}`;
  }
  if (thumbnail) {
    // A path the API named without an instance: Orthanc REST paths live under Orthanc's root.
    return thumbnail.startsWith('/') ? `${orthancRoot.replace(/\/+$/, '')}${thumbnail}` : `${api}/${thumbnail}`;
  }
  return null;
}
