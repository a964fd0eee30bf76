// The only way the pages talk to saed: the public JSON API of CONTRACT
// sections 5 and 7, on the same origin. Handles the API key (asked for on 401, kept in
// sessionStorage, sent as a Bearer token) and turns error bodies into ApiError.

import { apiPath } from './release.js';

const KEY_STORE = 'saed.apiKey';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORE);
  } catch {
    return null;
  }
}

// One key dialog at a time: requests that hit 401 together wait for the same answer.
let pendingAsk = null;

function askForKey(rejected) {
  if (pendingAsk) return pendingAsk;
  const dialog = document.getElementById('auth-dialog');
  const input = document.getElementById('auth-key');
  const error = document.getElementById('auth-error');
  if (!dialog || typeof dialog.showModal !== 'function') return Promise.resolve(false);
  error.hidden = !rejected;
  error.textContent = rejected ? 'That key was not accepted. Check it and try again.' : '';
  input.value = '';
  pendingAsk = new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      pendingAsk = null;
      const key = input.value.trim();
      input.value = '';
      if (dialog.returnValue === 'ok' && key) {
        try {
          sessionStorage.setItem(KEY_STORE, key);
        } catch {
          /* storage disabled: the key cannot be kept, the request will ask again */
        }
        resolve(true);
      } else {
        resolve(false);
      }
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    input.focus();
  });
  return pendingAsk;
}

// Sends a request and returns the parsed JSON reply; throws ApiError on an
// error status (with the API's code and message) and AbortError when `signal`
// aborts it.
export async function api(path, { method = 'GET', body, signal } = {}) {
  for (;;) {
    const key = storedKey();
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network_error', `Cannot reach saed (${e.message}).`);
    }
    if (res.status === 401) {
      const now = storedKey();
      if (now && now !== key) continue; // another request got a new key meanwhile
      if (await askForKey(Boolean(key))) continue;
      throw new ApiError(401, 'unauthorized',
        'This saed needs an API key. Retry to enter one.');
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!res.ok) {
      const e = data && data.error ? data.error : {};
      throw new ApiError(res.status, e.code || `http_${res.status}`,
        e.message || `${res.status} ${res.statusText}`, res.headers.get('Retry-After'));
    }
    if (data === null) throw new ApiError(res.status, 'bad_reply', `${path} did not answer JSON.`);
    return data;
  }
}

const models = new Map(); // scope ('' for the default SAE) -> promise of its /model

// GET /v1/model of `scope` (an SAE id, or null for the default SAE), fetched
// once per page load (a failure is not cached).
export function getModel(scope = null) {
  const key = scope ?? '';
  if (!models.has(key)) {
    models.set(key, api(apiPath(scope, '/model')).catch((e) => {
      models.delete(key);
      throw e;
    }));
  }
  return models.get(key);
}

let saesPromise = null;

// The SAEs this saed serves (GET /v1/saes, in serving order), fetched once
// per page load (a failure is not cached).
export function getSaes() {
  if (!saesPromise) {
    saesPromise = api('/v1/saes').then((r) => (Array.isArray(r.saes) ? r.saes : []), (e) => {
      saesPromise = null;
      throw e;
    });
  }
  return saesPromise;
}

// Runs `fn` over `items` with at most `limit` calls in flight; results in order.
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// Whether an error means "no feature index is loaded" (the feature routes 404 with no_index).
export function isNoIndex(err) {
  return err instanceof ApiError && err.code === 'no_index';
}
