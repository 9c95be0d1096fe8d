import studyLocation from './studyLocation.js';

/** The hanging protocol OHIF 3.13 ships for two studies side by side (extensions/default hpCompare). */
export const COMPARE_PROTOCOL_ID = '@ohif/hpCompare';

/**
 * The StudyInstanceUIDs of a viewer URL's query (`?StudyInstanceUIDs=A,B`, any case, repeated or
 * comma-separated), in order.
 */
export function studiesInUrl(search) {
  const params = new URLSearchParams(search || '');
  const uids = [];
  for (const [key, value] of params) {
    if (key.toLowerCase() === 'studyinstanceuids') {
      uids.push(...value.split(',').map(uid => uid.trim()).filter(Boolean));
    }
  }
  return [...new Set(uids)];
}

/**
 * Where "compare" takes the viewer: the study being read and a similar case side by side, with OHIF's
 * two-study hanging protocol (`hangingProtocolId`), each on its slice when known (OHIF's
 * `initialSeriesInstanceUID`/`initialSOPInstanceUID` take lists). The query study stays first, so it
 * keeps the left viewport and the panel keeps answering for it.
 *
 * @returns {{to: string, href: string}} as studyLocation
 */
export default function compareLocation({ pathname, basename, current, other, protocolId = COMPARE_PROTOCOL_ID }) {
  if (!current?.studyInstanceUid || !other?.studyInstanceUid) {
    throw new TypeError('compareLocation needs the current and the other StudyInstanceUID');
  }
  if (current.studyInstanceUid === other.studyInstanceUid) {
    return studyLocation({ pathname, basename, ...other });
  }
  const { to: single } = studyLocation({ pathname, basename, studyInstanceUid: current.studyInstanceUid });
  const route = single.slice(0, single.indexOf('?'));
  const both = [current, other];
  const query = new URLSearchParams({ StudyInstanceUIDs: both.map(s => s.studyInstanceUid).join(',') });
  if (protocolId) {
    query.set('hangingProtocolId', protocolId);
  }
  const series = both.map(s => s.seriesInstanceUid).filter(Boolean);
  const sops = both.filter(s => s.seriesInstanceUid && s.sopInstanceUid).map(s => s.sopInstanceUid);
  if (series.length) {
    query.set('initialSeriesInstanceUID', series.join(','));
  }
  if (sops.length) {
    query.set('initialSOPInstanceUID', sops.join(','));
  }
  // ',', '@' and '/' are legal in a query string: kept readable (OHIF splits the lists on ',').
  const text = query.toString().replace(/%2C/gi, ',').replace(/%40/g, '@').replace(/%2F/gi, '/');
  const to = `${route}?${text}`;
  const base = String(basename || '').replace(/^\/+|\/+$/g, '');
  return { to, href: base ? `/${base}${to}` : to };
}
