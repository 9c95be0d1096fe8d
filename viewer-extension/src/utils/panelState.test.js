import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, makeRequestKey, panelReducer, stateForError } from './panelState.js';

const key = makeRequestKey({ sopInstanceUid: '1.2', k: 10, excludeSamePatient: true });
const loading = panelReducer(initialState, { type: 'start', requestKey: key });
const hit = overrides => ({ study_instance_uid: 'S1', sop_instance_uid: '1', label: 'glioma', score: 0.9, ...overrides });

test('start -> loading', () => {
  assert.equal(loading.status, 'loading');
  assert.equal(loading.requestKey, key);
});

test('success with hits -> the cases as the plugin grouped them, with a summary', () => {
  const body = { query: { k: 10 }, results: [hit(), hit({ study_instance_uid: 'S2', label: 'meningioma', score: 0.7 })] };
  const state = panelReducer(loading, { type: 'success', requestKey: key, body });
  assert.equal(state.status, 'results');
  assert.deepEqual(state.cases, body.results);
  assert.equal(state.summary.text, '1 of 2 similar cases are labelled glioma; 1 meningioma.');
});

test('success without hits -> empty', () => {
  assert.equal(panelReducer(loading, { type: 'success', requestKey: key, body: { results: [] } }).status, 'empty');
});

test('an answer to an older request is dropped', () => {
  const newer = panelReducer(loading, { type: 'start', requestKey: 'newer' });
  assert.equal(panelReducer(newer, { type: 'success', requestKey: key, body: { results: [hit()] } }), newer);
  assert.equal(panelReducer(newer, { type: 'failure', requestKey: key, error: { status: 500 } }), newer);
});

test('a new query keeps the previous results to show while loading', () => {
  const results = panelReducer(loading, { type: 'success', requestKey: key, body: { results: [hit()] } });
  const again = panelReducer(results, { type: 'start', requestKey: 'k2' });
  assert.equal(again.previous.cases.length, 1);
});

test('errors map to their states', () => {
  assert.deepEqual(stateForError({ status: 409, message: 'not yet', body: { pending: 7 } }), {
    status: 'pending',
    pending: 7,
    message: 'not yet',
  });
  assert.equal(stateForError({ status: 409, body: {} }).pending, null);
  assert.equal(stateForError({ status: 422 }).status, 'notIndexable');
  assert.equal(stateForError({ status: 404 }).status, 'notFound');
  assert.equal(stateForError({ status: 503 }).status, 'unavailable');
  assert.equal(stateForError({ status: 0, message: 'down' }).status, 'error');
  assert.equal(stateForError(new Error('boom')).message, 'boom');
});

test('failure goes through stateForError; noImage resets', () => {
  const state = panelReducer(loading, { type: 'failure', requestKey: key, error: { status: 422, message: 'RGB' } });
  assert.equal(state.status, 'notIndexable');
  assert.equal(panelReducer(state, { type: 'noImage' }), initialState);
});

test('a filtered answer says that a filter is on instead of counting the filtered label', () => {
  const body = { query: { params: { label: 'glioma' } }, results: [hit(), hit({ study_instance_uid: 'S2' })] };
  const state = panelReducer(loading, { type: 'success', requestKey: key, body });
  assert.equal(state.summary.filtered, true);
  assert.match(state.summary.text, /^Label filter on: only cases labelled glioma/);
  assert.doesNotMatch(state.summary.text, /2 of 2/);
});
