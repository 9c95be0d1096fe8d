import { test } from 'node:test';
import assert from 'node:assert/strict';
import CbmirClient, { CbmirApiError } from './CbmirClient.js';

const fakeFetch = (status, body, calls = []) => async (url, init) => {
  calls.push({ url, init });
  return {
    ok: status >= 200 && status < 300,
    status,
    text: async () => (typeof body === 'string' ? body : JSON.stringify(body)),
  };
};

test('similar() builds the query and returns the body', async () => {
  const calls = [];
  const client = new CbmirClient({ apiRoot: '/cbmir/', fetch: fakeFetch(200, { query: {}, results: [] }, calls) });
  const body = await client.similar('1.2.3', { k: 5, excludeSamePatient: false, label: 'glioma' });
  assert.deepEqual(body.results, []);
  const url = new URL(calls[0].url, 'http://x');
  assert.equal(url.pathname, '/cbmir/similar/1.2.3');
  assert.equal(url.searchParams.get('k'), '5');
  assert.equal(url.searchParams.get('exclude_same_patient'), 'false');
  assert.equal(url.searchParams.get('group_by'), 'study');
  assert.equal(url.searchParams.get('label'), 'glioma');
  assert.equal(url.searchParams.has('modality'), false);
  assert.equal(calls[0].init.credentials, 'same-origin');
});

test('excludeSamePatient defaults to true', async () => {
  const calls = [];
  await new CbmirClient({ fetch: fakeFetch(200, { results: [] }, calls) }).similar('1');
  assert.match(calls[0].url, /exclude_same_patient=true/);
});

test('an error answer is thrown with its status and JSON body', async () => {
  const client = new CbmirClient({ fetch: fakeFetch(409, { error: 'not indexed yet', pending: 12 }) });
  await assert.rejects(client.similar('1.2'), error => {
    assert.ok(error instanceof CbmirApiError);
    assert.equal(error.status, 409);
    assert.equal(error.message, 'not indexed yet');
    assert.equal(error.body.pending, 12);
    return true;
  });
});

test('a non-JSON error keeps its text', async () => {
  const client = new CbmirClient({ fetch: fakeFetch(500, 'Internal error') });
  await assert.rejects(client.status(), { name: 'CbmirApiError', status: 500, message: 'Internal error' });
});

test('a network failure becomes status 0; an abort stays an abort', async () => {
  const down = new CbmirClient({ fetch: async () => { throw new TypeError('Failed to fetch'); } });
  await assert.rejects(down.status(), { status: 0 });
  const aborted = new CbmirClient({
    fetch: async () => { throw Object.assign(new Error('aborted'), { name: 'AbortError' }); },
  });
  await assert.rejects(aborted.status(), { name: 'AbortError' });
});

test('a 200 without a results list is an error', async () => {
  const client = new CbmirClient({ fetch: fakeFetch(200, { nope: 1 }) });
  await assert.rejects(client.similar('1'), { status: 200 });
});

test('similar() refuses an empty uid', async () => {
  await assert.rejects(new CbmirClient({ fetch: fakeFetch(200, {}) }).similar(''), TypeError);
});

test('labels are form-encoded (space as +, UTF-8 percent-escapes): the plugin decodes them once', async () => {
  const calls = [];
  const client = new CbmirClient({ fetch: fakeFetch(200, { results: [] }, calls) });
  await client.similar('1.2', { label: 'méningiome (grade I) a+b/c?d&e=f#%' });
  const raw = calls[0].url.split('?')[1];
  assert.match(raw, /label=m%C3%A9ningiome\+%28grade\+I%29\+a%2Bb%2Fc%3Fd%26e%3Df%23%25(&|$)/);
  assert.equal(new URL(calls[0].url, 'http://x').searchParams.get('label'), 'méningiome (grade I) a+b/c?d&e=f#%');
});
