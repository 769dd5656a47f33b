// The client of the public API (/v1/webhooks/...). The API key lives in
// sessionStorage only: never in a URL, a cookie or localStorage. A 401 ends
// the session (the app returns to sign-in).

const KEY = 'zaits.console.apiKey';

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ''; },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

// ApiError is a failed call: the HTTP status (0: no answer) and the error
// envelope's code, message and details [{field, issue}].
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
  }
}

// api(method, path, {body, query, headers, signal, key}) calls the API and returns
// the parsed envelope ({success, data, pagination}); it throws ApiError.
export async function api(method, path, opts = {}) {
  const key = opts.key ?? session.key;
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    const qs = q.toString();
    if (qs) url += `?${qs}`;
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers, body, signal: opts.signal, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The gateway could not be reached; check the connection and try again.');
  }
  let doc = null;
  try { doc = await resp.json(); } catch { /* not JSON */ }
  if (resp.ok && doc && doc.success) return doc;
  const err = doc && doc.error ? doc.error : {};
  const e = new ApiError(resp.status, err.code || 'http_' + resp.status, err.message || `The gateway answered ${resp.status}.`, err.details);
  if (resp.status === 401 && !opts.key) {
    session.clear();
    window.dispatchEvent(new CustomEvent('console:unauthorized', { detail: e.message }));
  }
  throw e;
}

// The routes the console uses.
const ep = (id) => `/v1/webhooks/endpoints/${encodeURIComponent(id)}`;
export const routes = {
  endpoints: '/v1/webhooks/endpoints',
  events: '/v1/webhooks/events',
  endpoint: ep,
  test: (id) => `${ep(id)}/test`,
  rotate: (id) => `${ep(id)}/secret/rotate`,
  deliveries: (id) => `${ep(id)}/deliveries`,
  delivery: (id, did) => `${ep(id)}/deliveries/${encodeURIComponent(did)}`,
  resend: (id, did) => `${ep(id)}/deliveries/${encodeURIComponent(did)}/resend`,
  stats: (id) => `${ep(id)}/stats`,
  recover: (id) => `${ep(id)}/recover`,
  replay: (id) => `${ep(id)}/replay`,
  jobs: (id) => `${ep(id)}/jobs`,
  job: (id, jid) => `${ep(id)}/jobs/${encodeURIComponent(jid)}`,
};

let catalogue = null;
// eventTypes() is the catalogue of GET /v1/webhooks/events, read once.
export async function eventTypes() {
  if (!catalogue) {
    catalogue = api('GET', routes.events).then((r) => r.data.events).catch((e) => { catalogue = null; throw e; });
  }
  return catalogue;
}
