import { test } from 'node:test';
import assert from 'node:assert/strict';
import trackActiveImage from './trackActiveImage.js';

const imageId = sop => `wadors:/dicom-web/studies/S/series/R/instances/${sop}/frames/1`;

function fakeServices({ active = 'vp1', current = '1.1' } = {}) {
  const state = { active, current, listeners: [] };
  const services = {
    viewportGridService: {
      EVENTS: { ACTIVE_VIEWPORT_ID_CHANGED: 'active' },
      getActiveViewportId: () => state.active,
      getDisplaySetsUIDsForViewport: () => ['ds1'],
      subscribe: (name, fn) => {
        state.listeners.push(fn);
        return { unsubscribe: () => (state.listeners = state.listeners.filter(f => f !== fn)) };
      },
    },
    cornerstoneViewportService: {
      getCornerstoneViewport: () => ({ getCurrentImageId: () => imageId(state.current) }),
    },
    displaySetService: {
      getDisplaySetByUID: () => ({
        StudyInstanceUID: 'S',
        SeriesInstanceUID: 'R',
        SeriesDescription: 'T1 post',
        instances: [{ SOPInstanceUID: '1.1' }, { SOPInstanceUID: '1.2' }],
      }),
    },
  };
  return { state, services };
}

test('reports the image on screen at start, then new slices of the active viewport only', () => {
  const doc = new EventTarget();
  const { state, services } = fakeServices();
  const seen = [];
  const stop = trackActiveImage(services, image => seen.push(image), { pollMs: 0, doc });
  assert.deepEqual(seen[0], {
    viewportId: 'vp1',
    sopInstanceUid: '1.1',
    studyInstanceUid: 'S',
    seriesInstanceUid: 'R',
    seriesDescription: 'T1 post',
  });

  const fire = (viewportId, sop) =>
    doc.dispatchEvent(Object.assign(new Event('CORNERSTONE_STACK_NEW_IMAGE'), { detail: { viewportId, imageId: imageId(sop) } }));
  fire('vp2', '1.9');
  assert.equal(seen.length, 1, 'another viewport is ignored');
  fire('vp1', '1.1');
  assert.equal(seen.length, 1, 'the same slice again is not a change');
  fire('vp1', '1.2');
  assert.equal(seen[1].sopInstanceUid, '1.2');

  stop();
  fire('vp1', '1.1');
  assert.equal(seen.length, 2, 'nothing after stop');
  assert.equal(state.listeners.length, 0);
});

test('no active viewport gives nothing', () => {
  const { services } = fakeServices({ active: null });
  const seen = [];
  trackActiveImage(services, image => seen.push(image), { pollMs: 0, doc: new EventTarget() })();
  assert.deepEqual(seen, []);
});
