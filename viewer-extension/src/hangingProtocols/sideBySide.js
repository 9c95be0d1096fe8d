/**
 * "Compare" hangs the study being read and a similar case side by side, one viewport each.
 *
 * Why not OHIF's own `@ohif/hpCompare` (still selectable with the `compareProtocolId` setting): it lays
 * a single-series study out as a 2x2 grid with two empty cells, and its viewports ignore
 * `initialSOPInstanceUID`, so the radiologist loses the slice being read and lands on the first slice of
 * the similar case instead of the matching one. This protocol is hpCompare's 2x1 stage with OHIF's
 * `sopInstanceLocation` initial image (as in OHIF's default protocol) in both viewports.
 */
export const SIDE_BY_SIDE_ID = '@orthanc-cbmir/side-by-side';

const studyAt = index => ({
  // studyInstanceUIDsIndex: the study's position in the URL's StudyInstanceUIDs (0: read, 1: compared)
  studyMatchingRules: [
    { attribute: 'studyInstanceUIDsIndex', from: 'options', required: true, constraint: { equals: { value: index } } },
  ],
  seriesMatchingRules: [
    { attribute: 'numImageFrames', constraint: { greaterThan: { value: 0 } } },
    // The series named in the URL (initialSeriesInstanceUID / initialSOPInstanceUID) first.
    { attribute: 'isDisplaySetFromUrl', weight: 20, constraint: { equals: true } },
  ],
});

const viewport = displaySetId => ({
  viewportOptions: {
    viewportType: 'stack',
    toolGroupId: 'default',
    allowUnmatchedView: true,
    initialImageOptions: { custom: 'sopInstanceLocation' },
  },
  displaySets: [{ id: displaySetId }],
});

export const sideBySide = {
  id: SIDE_BY_SIDE_ID,
  name: 'Similar case side by side',
  description: 'The study being read and a similar case, one viewport each, each on its slice',
  numberOfPriorsReferenced: 1,
  protocolMatchingRules: [
    // Only with a second study in the URL; a low weight, so it is used when asked for by id.
    { id: 'Two Studies', weight: 1, attribute: 'StudyInstanceUID', from: 'prior', required: true, constraint: { notNull: true } },
  ],
  toolGroupIds: ['default'],
  displaySetSelectors: { readDisplaySetId: studyAt(0), similarDisplaySetId: studyAt(1) },
  defaultViewport: {
    viewportOptions: { viewportType: 'stack', toolGroupId: 'default', allowUnmatchedView: true },
    displaySets: [{ id: 'readDisplaySetId', matchedDisplaySetsIndex: -1 }],
  },
  stages: [
    {
      id: '1x2',
      name: '1x2',
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 2 } },
      viewports: [viewport('readDisplaySetId'), viewport('similarDisplaySetId')],
    },
  ],
};

/** OHIF's hanging protocol module factory. */
export default function getHangingProtocolModule() {
  return [{ name: SIDE_BY_SIDE_ID, protocol: sideBySide }];
}
