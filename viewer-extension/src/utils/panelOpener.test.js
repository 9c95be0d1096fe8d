import { test } from 'node:test';
import assert from 'node:assert/strict';
import createPanelOpener from './panelOpener.js';

const ADDED = 'event::displaySetService:displaySetsAdded';
const tick = () => new Promise(resolve => setTimeout(resolve, 0));

function fakeServices() {
  const listeners = new Set();
  const activated = [];
  const fake = {
    activated,
    listeners,
    services: {
      displaySetService: {
        EVENTS: { DISPLAY_SETS_ADDED: ADDED },
        subscribe(event, callback) {
          assert.equal(event, ADDED);
          listeners.add(callback);
          return { unsubscribe: () => listeners.delete(callback) };
        },
        getActiveDisplaySets: () => [],
      },
      panelService: {
        activatePanel: (id, force) => {
          activated.push([id, force]);
          fake.onActivate?.();
        },
      },
    },
    add(displaySets) {
      for (const listener of listeners) {
        listener({ displaySetsAdded: displaySets });
      }
    },
  };
  return fake;
}

const displaySet = (study, uid, sops) => ({
  StudyInstanceUID: study,
  displaySetInstanceUID: uid,
  instances: sops.map(SOPInstanceUID => ({ SOPInstanceUID })),
});

function opener({ openByDefault = true, answers = {}, search = '?StudyInstanceUIDs=ST1' } = {}) {
  // retryMs 0: activations repeat on each timer tick until panelShown(); the tests call it.
  const asked = [];
  const made = createPanelOpener({
    getConfig: () => ({ openByDefault, apiRoot: '/cbmir' }),
    makeClient: () => ({
      similar: async (sop, options) => {
        asked.push([sop, options.k]);
        if (answers[sop] !== 200) {
          throw Object.assign(new Error('no'), { status: answers[sop] ?? 409 });
        }
        return { results: [{}] };
      },
    }),
    panelId: 'ext.panelModule.similarCases',
    getSearch: () => search,
    retryMs: 0,
  });
  return { made, asked };
}

test('opens the panel once a slice of the study being read is indexed', async () => {
  const fake = fakeServices();
  const { made, asked } = opener({ answers: { b: 200 } });
  fake.onActivate = () => made.panelShown(); // the panel mounts at once
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'ds1', ['a', 'b', 'c'])]); // the middle slice: b
  await tick();
  assert.deepEqual(asked, [['b', 1]]);
  assert.deepEqual(fake.activated, [['ext.panelModule.similarCases', true]]);
  fake.add([displaySet('ST1', 'ds2', ['b'])]); // already open: no more asking
  await tick();
  assert.equal(asked.length, 1);
});

test('leaves the panel closed for a study without indexed images, and asks little', async () => {
  const fake = fakeServices();
  const { made, asked } = opener({ answers: { x: 422, y: 409 } });
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'd1', ['x']), displaySet('ST1', 'd2', ['y']), displaySet('ST1', 'd3', ['z'])]);
  fake.add([displaySet('ST1', 'd4', ['w'])]);
  await tick();
  assert.equal(asked.length, 3);
  assert.deepEqual(fake.activated, []);
});

test('only the study being read counts (the first of the URL), not a compared one', async () => {
  const fake = fakeServices();
  const { made, asked } = opener({ answers: { other: 200 }, search: '?StudyInstanceUIDs=ST1,ST2' });
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST2', 'd', ['other'])]);
  await tick();
  assert.deepEqual(asked, []);
  assert.deepEqual(fake.activated, []);
});

test('off in the config: never asks, never opens', async () => {
  const fake = fakeServices();
  const { made, asked } = opener({ openByDefault: false, answers: { a: 200 } });
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'd', ['a'])]);
  await tick();
  assert.deepEqual([asked, fake.activated, fake.listeners.size], [[], [], 0]);
});

test('leaving the mode stops listening and drops late answers', async () => {
  const fake = fakeServices();
  const { made } = opener({ answers: { a: 200 } });
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'd', ['a'])]);
  made.onModeExit(); // before the answer arrives
  await tick();
  assert.deepEqual(fake.activated, []);
  assert.equal(fake.listeners.size, 0);
});

test('keepOpen: the next mode enter re-opens the panel without asking, even when off by default', async () => {
  const fake = fakeServices();
  const { made, asked } = opener({ openByDefault: false });
  fake.onActivate = () => made.panelShown();
  made.keepOpen();
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'd', ['a'])]);
  await tick();
  assert.deepEqual(asked, []);
  assert.deepEqual(fake.activated, [['ext.panelModule.similarCases', true]]);
  made.onModeEnter({ servicesManager: { services: fake.services } }); // only once
  fake.add([displaySet('ST1', 'd2', ['b'])]);
  await tick();
  assert.equal(fake.activated.length, 1);
});

test('activates again until the panel says it is shown (OHIF drops early activations)', async () => {
  const fake = fakeServices();
  const { made } = opener({ answers: { a: 200 } });
  made.onModeEnter({ servicesManager: { services: fake.services } });
  fake.add([displaySet('ST1', 'd', ['a'])]);
  for (let i = 0; i < 4; i++) {
    await new Promise(resolve => setTimeout(resolve, 5));
  }
  const before = fake.activated.length;
  assert.ok(before >= 2, `activated ${before} times`);
  made.panelShown();
  await new Promise(resolve => setTimeout(resolve, 20));
  assert.ok(fake.activated.length <= before + 1);
  assert.ok(fake.activated.length <= 11); // bounded
  made.onModeExit();
});
