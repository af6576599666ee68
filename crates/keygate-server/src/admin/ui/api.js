// The dashboard's JSON API (/ui/api/*): every call carries the admin token, which the login
// page keeps in sessionStorage (gone when the tab closes).

const KEY = 'keygate-admin-token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Calls /ui/api/PATH; resolves to the JSON answer, rejects with an ApiError carrying the
// server's message.
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Authorization: `Bearer ${token() || ''}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/ui/api/${path}`, init);
  } catch (err) {
    throw new ApiError(0, `the gateway did not answer (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}

// A query string from the non-empty values of `params`.
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
