/**
 * Where "open" takes the viewer: the same mode route the user is in (e.g. `viewer`, or `similar` for the
 * runtime mode), with the study and, when known, the series and slice to show first.
 *
 * `to` is for OHIF's `navigateHistory` command (react-router `navigate`), which resolves an absolute path
 * against the router basename: under `/ohif/` it must be `/viewer?...`, not `/ohif/viewer?...` (that would
 * become `/ohif/ohif/viewer`). `href` is the full URL path for links and for a plain page load.
 *
 * @returns {{to: string, href: string}}
 */
export default function studyLocation({
  pathname = '/',
  basename = '/',
  studyInstanceUid,
  seriesInstanceUid,
  sopInstanceUid,
}) {
  if (!studyInstanceUid) {
    throw new TypeError('studyLocation needs a StudyInstanceUID');
  }
  const base = _trimSlashes(basename);
  let route = _trimSlashes(pathname);
  if (base && (route === base || route.startsWith(`${base}/`))) {
    route = route.slice(base.length);
  }
  route = _trimSlashes(route) || 'viewer';
  const query = new URLSearchParams({ StudyInstanceUIDs: studyInstanceUid });
  if (seriesInstanceUid) {
    query.set('initialSeriesInstanceUID', seriesInstanceUid);
    if (sopInstanceUid) {
      query.set('initialSOPInstanceUID', sopInstanceUid);
    }
  }
  const to = `/${route}?${query}`;
  return { to, href: base ? `/${base}${to}` : to };
}

function _trimSlashes(path) {
  return String(path || '').replace(/^\/+|\/+$/g, '');
}
