// The dashboard's shell: the login page (the admin token goes to sessionStorage), hash routes
// to the pages, and what happens when the token is refused.

import { api, clearToken, setToken, token } from './api.js';
import * as pages from './pages.js';

const { h } = pages;
const ROUTES = {
  overview: pages.overview,
  breakdowns: pages.breakdowns,
  logs: pages.logs,
  keys: pages.keys,
  policy: pages.policy,
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logout = document.getElementById('logout');

// `#/logs?model=x` -> ['logs', URLSearchParams]
function route() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [name, search = ''] = hash.split('?');
  return [ROUTES[name] ? name : 'overview', new URLSearchParams(search)];
}

function signedIn(on) {
  nav.hidden = !on;
  logout.hidden = !on;
}

function login(message) {
  signedIn(false);
  const input = h('input', {
    type: 'password', name: 'token', id: 'token', autocomplete: 'off', required: true, size: 48,
  });
  const status = h('p', { class: message ? 'error' : 'muted', role: message ? 'alert' : null, 'data-testid': 'login-status' },
    message || 'Paste the admin token: the file DATA_DIR/admin-token, printed once when the gateway created it.');
  const form = h('form', { class: 'card login', 'data-testid': 'login', onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await api('session');
      render();
    } catch (err) {
      clearToken();
      status.className = 'error';
      status.textContent = err.status === 401 ? 'That token was refused.' : err.message;
    }
  } },
  h('h1', {}, 'Sign in'),
  h('label', { for: 'token' }, 'Admin token'),
  input,
  h('button', { type: 'submit' }, 'Sign in'),
  status);
  main.replaceChildren(form);
  input.focus();
}

let rendering = 0;

async function render() {
  if (!token()) {
    login();
    return;
  }
  signedIn(true);
  const [name, params] = route();
  for (const link of nav.querySelectorAll('a')) {
    link.classList.toggle('on', link.dataset.page === name);
  }
  const current = ++rendering;
  main.setAttribute('aria-busy', 'true');
  document.body.dataset.page = name;
  try {
    await ROUTES[name](main, params);
  } catch (err) {
    if (current !== rendering) return;
    if (err.status === 401) {
      clearToken();
      login('The admin token was refused: sign in again.');
      return;
    }
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message));
  } finally {
    if (current === rendering) {
      main.removeAttribute('aria-busy');
      // For tests and scripts: which page finished rendering, and how many renders so far.
      document.body.dataset.ready = name;
      document.body.dataset.renders = String(current);
    }
  }
}

// A refused token in a button's action (not a page load) also ends the session.
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason && event.reason.status === 401) {
    event.preventDefault();
    clearToken();
    login('The admin token was refused: sign in again.');
  }
});

logout.addEventListener('click', () => {
  clearToken();
  login();
});
window.addEventListener('hashchange', render);
render();
