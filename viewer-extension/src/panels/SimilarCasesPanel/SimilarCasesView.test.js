import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { panelReducer, initialState } from '../../utils/panelState.js';

// The view is JSX: bundle it (with React and react-dom/server) for node, then render to static markup.
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..');
let render;

before(async () => {
  const outdir = fs.mkdtempSync(path.join(root, 'node_modules', '.cbmir-view-test-'));
  const entry = path.join(outdir, 'entry.jsx');
  fs.writeFileSync(
    entry,
    `import React from 'react';
     import { renderToStaticMarkup } from 'react-dom/server';
     import SimilarCasesView from ${JSON.stringify(path.join(here, 'SimilarCasesView.jsx'))};
     export const render = props => renderToStaticMarkup(<SimilarCasesView {...props} />);`
  );
  const outfile = path.join(outdir, 'bundle.cjs');
  try {
    await build({ entryPoints: [entry], bundle: true, format: 'cjs', platform: 'node', outfile, jsx: 'automatic', logLevel: 'error' });
    ({ render } = createRequire(import.meta.url)(outfile));
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
});

const noop = () => {};
const props = state => ({
  state,
  image: { sopInstanceUid: '1.2.3', seriesDescription: 'T1 post' },
  k: 10,
  kChoices: [5, 10, 20],
  excludeSamePatient: true,
  label: '',
  labels: ['glioma', 'meningioma'],
  onKChange: noop,
  onExcludeSamePatientChange: noop,
  onLabelChange: noop,
  onRetry: noop,
  onOpen: noop,
  thumbnailUrl: hit => `/instances/${hit.instance}/preview`,
});
const hit = overrides => ({
  instance: 'i1',
  sop_instance_uid: 'S.1',
  study_instance_uid: 'ST.1',
  series_instance_uid: 'SE.1',
  label: 'glioma',
  score: 0.93,
  study_date: '20240101',
  series_description: 'T1 post',
  ...overrides,
});
const loaded = results => {
  const loading = panelReducer(initialState, { type: 'start', requestKey: 'k' });
  return panelReducer(loading, { type: 'success', requestKey: 'k', body: { results } });
};
const count = (html, needle) => html.split(needle).length - 1;

test('results: the root, one card per case (the plugin sends one per study) with its open control, the summary', () => {
  const html = render(props(loaded([hit(), hit({ study_instance_uid: 'ST.2', label: 'meningioma', instance: 'i2' })])));
  assert.match(html, /data-testid="cbmir-panel"[^>]*data-state="results"/);
  assert.equal(count(html, 'data-testid="cbmir-result"'), 2);
  assert.equal(count(html, 'data-testid="cbmir-open"'), 2);
  assert.match(html, /<li[^>]*data-testid="cbmir-result"[\s\S]*?data-testid="cbmir-open"[\s\S]*?<\/li>/);
  assert.match(html, /1 of 2 similar cases are labelled glioma; 1 meningioma\./);
  assert.match(html, /not a diagnosis/);
  assert.match(html, /2024-01-01/);
  assert.match(html, /0\.930/);
  assert.match(html, /src="\/instances\/i1\/preview"/);
  assert.match(html, /data-testid="cbmir-exclude-same-patient" checked=""/);
});

test('pending shows the number of images waiting', () => {
  const html = render(props({ status: 'pending', pending: 12 }));
  assert.match(html, /not indexed yet/);
  assert.match(html, /12 images waiting/);
  assert.equal(count(html, 'data-testid="cbmir-result"'), 0);
});

test('the other states each say what happened', () => {
  const cases = [
    [{ status: 'idle' }, /Scroll to a slice/],
    [{ status: 'loading' }, /Looking for similar cases/],
    [{ status: 'empty' }, /No similar cases found/],
    [{ status: 'notIndexable', message: 'modality CT not in CBMIR.Modalities' }, /cannot be searched: modality CT/],
    [{ status: 'notFound' }, /does not know this image/],
    [{ status: 'unavailable' }, /model is not available/],
    [{ status: 'error', message: 'HTTP 500' }, /Could not get similar cases: HTTP 500/],
  ];
  for (const [state, pattern] of cases) {
    const html = render(props(state));
    assert.match(html, pattern, state.status);
    assert.match(html, new RegExp(`data-state="${state.status}"`));
  }
});

test('each card reads its percentile; the tooltip explains it and keeps the raw cosine', () => {
  const html = render(props(loaded([hit({ score: 0.9995312, percentile: 99.83 }), hit({ study_instance_uid: 'ST.2', score: 0.41, percentile: 37.5 })])));
  assert.match(html, /data-testid="cbmir-similarity"[^>]*data-percentile="99.83"[^>]*title="[^"]*99\.8 % of the images in this archive[^"]*Raw cosine similarity of the image embeddings: 0\.999531/);
  assert.match(html, />closer than 99\.8 %</);
  assert.match(html, />closer than 37 %</);
  assert.doesNotMatch(html, />0\.9995/); // the raw cosine is in the tooltip, not the card
  assert.match(html, /class="cbmir-legend"/);
});

test('with a label filter on, the summary says so instead of counting the filtered label', () => {
  const loading = panelReducer(initialState, { type: 'start', requestKey: 'k' });
  const body = { query: { params: { label: 'glioma' } }, results: [hit(), hit({ study_instance_uid: 'ST.2' })] };
  const html = render({ ...props(panelReducer(loading, { type: 'success', requestKey: 'k', body })), label: 'glioma' });
  assert.match(html, /data-testid="cbmir-summary" data-filtered="true"/);
  assert.match(html, /Label filter on: only cases labelled glioma are shown \(2 cases\)/);
  assert.doesNotMatch(html, /2 of 2/);
});

test('comparing: a bar with one click back, the compared case marked', () => {
  const state = loaded([hit(), hit({ study_instance_uid: 'ST.2', instance: 'i2' })]);
  const html = render({ ...props(state), comparing: { studyInstanceUid: 'ST.2' }, onBack: noop });
  assert.match(html, /data-testid="cbmir-compare" data-study-instance-uid="ST.2"/);
  assert.match(html, /data-testid="cbmir-back"[^>]*>Back to single study</);
  assert.match(html, /data-compared="true" data-label="glioma" data-study-instance-uid="ST.2"/);
  assert.match(html, /data-compared="false" data-label="glioma" data-study-instance-uid="ST.1"/);
  assert.equal(count(html, '>Compare<'), 1);
  assert.doesNotMatch(render(props(state)), /cbmir-compare/);
});
