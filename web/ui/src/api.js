// HTTP client for the meshlens API. Every failure becomes an ApiError with a
// message fit for a person: never a stack trace or an HTML error page.

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
  /** The endpoint does not exist on this server (a feature not built or not enabled). */
  get notAvailable() { return this.status === 404 || this.status === 501; }
  get forbidden() { return this.status === 401 || this.status === 403; }
}

/** Reads the message out of an error response: {"error": "..."} or short plain text. */
export async function errorMessage(res) {
  let text = '';
  try { text = await res.text(); } catch { /* body unreadable: use the status */ }
  let msg = '';
  try {
    const j = JSON.parse(text);
    msg = typeof j === 'string' ? j : (j.error?.message ?? j.error ?? j.message ?? '');
  } catch {
    // Plain text is shown only when short and not markup.
    if (text && text.length <= 200 && !/^\s*</.test(text)) msg = text.trim();
  }
  if (typeof msg !== 'string') msg = String(msg);
  const base = res.status === 404 ? 'not available on this server'
    : res.status === 401 ? 'sign in required' : res.status === 403 ? 'not allowed'
      : `request failed (HTTP ${res.status})`;
  return msg ? `${base}: ${msg}` : base;
}

// The server refuses browser writes without this header (a cross-site form
// cannot set it); the session itself is an HttpOnly cookie set by /api/v1/login.
const CSRF = { 'X-Meshlens-Csrf': '1' };

/** Called with every 401, so the page can offer to sign in. */
let onUnauthorized = null;
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function request(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...(method !== 'GET' ? CSRF : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError('cannot reach the meshlens server', 0);
  }
  if (!res.ok) {
    const err = new ApiError(await errorMessage(res), res.status);
    if (res.status === 401 && !path.startsWith('/api/v1/login')) onUnauthorized?.(err);
    throw err;
  }
  if (res.status === 204) return null;
  try {
    return await res.json();
  } catch {
    throw new ApiError(`unreadable answer from ${path.split('?')[0]}`, res.status);
  }
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v == null || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    p.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = p.toString();
  return s ? '?' + s : '';
}

export const api = {
  graph: ({ view, namespaces, window, at }) => request('GET', '/api/v1/graph' + qs({ view, namespace: namespaces, window, at })),
  namespaces: () => request('GET', '/api/v1/namespaces'),
  history: ({ source, target, view, window = '1h' }) => request('GET', '/api/v1/history' + qs({ source, target, view, window })),
  anomalies: () => request('GET', '/api/v1/anomalies'),
  incidents: () => request('GET', '/api/v1/incidents'),
  suspects: (window = '10m') => request('GET', '/api/v1/suspects' + qs({ window })),
  diff: ({ from, to, view }) => request('GET', '/api/v1/graph/diff' + qs({ from, to, view })),
  chat: (sessionId, message) => request('POST', '/api/v1/chat', { sessionId, message }),
  proposals: () => request('GET', '/api/v1/proposals'),
  decide: (id, decision, body = {}) => request('POST', `/api/v1/proposals/${encodeURIComponent(id)}/${decision}`, body),
  whoami: () => request('GET', '/api/v1/whoami'),
  login: (token) => request('POST', '/api/v1/login', { token }),
  logout: () => request('POST', '/api/v1/logout', {}),
};

/** Lists come either bare or wrapped ({items: []}, {anomalies: []}, ...). */
export function listOf(resp, ...keys) {
  if (Array.isArray(resp)) return resp;
  for (const k of ['items', ...keys]) if (Array.isArray(resp?.[k])) return resp[k];
  return [];
}
