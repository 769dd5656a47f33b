// The console's entry point: a hash router (#/endpoints/…), the navigation,
// and the session rules (no key: sign-in; a 401: back to sign-in).
import { h, replace } from './dom.js';
import { session } from './api.js';
import { signInPage } from './signin.js';
import { endpointsPage, endpointFormPage } from './endpoints.js';
import { endpointPage } from './endpoint.js';
import { deliveryPage } from './delivery.js';

// CSP violations would be silent otherwise: make them console errors.
document.addEventListener('securitypolicyviolation', (e) => {
  console.error(`Content-Security-Policy violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline code'}`);
});

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let cleanup = null;
let notice = '';

// parse(hash) → {parts, query}: "#/endpoints/we_1?status=failed".
function parse(hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [p, q = ''] = raw.split('?');
  return { parts: p.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q) };
}

// go(path) navigates inside the app.
export function go(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = path;
}

// setQuery(params) replaces the current route's query without a new history entry.
export function setQuery(params) {
  const { parts } = parse(location.hash);
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const path = `#/${parts.map(encodeURIComponent).join('/')}${q.toString() ? `?${q}` : ''}`;
  history.replaceState(null, '', path);
}

function renderNav() {
  if (!session.key) { nav.replaceChildren(); return; }
  replace(nav,
    h('a', { href: '#/endpoints', text: 'Endpoints' }),
    h('button', { type: 'button', class: 'btn btn-quiet', id: 'sign-out', text: 'Sign out', onclick: signOut }));
}

function signOut() {
  session.clear();
  notice = 'You are signed out. The API key was removed from this tab.';
  go('/signin');
}

// ctx is what a page gets: where to render, the route, and how to move on.
function render() {
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  const { parts, query } = parse(location.hash);
  renderNav();
  if (!session.key && parts[0] !== 'signin') { go('/signin'); return; }
  const ctx = { main, query, go, setQuery, notice, flash: (msg) => { notice = msg; }, onCleanup: (f) => { cleanup = f; } };
  notice = '';
  let page;
  if (parts[0] === 'signin') page = signInPage;
  else if (parts.length === 0 || (parts[0] === 'endpoints' && parts.length === 1)) page = endpointsPage;
  else if (parts[0] === 'endpoints' && parts[1] === 'new' && parts.length === 2) page = endpointFormPage;
  else if (parts[0] === 'endpoints' && parts.length === 2) { ctx.id = parts[1]; page = endpointPage; }
  else if (parts[0] === 'endpoints' && parts.length === 3 && parts[2] === 'edit') { ctx.id = parts[1]; page = endpointFormPage; }
  else if (parts[0] === 'endpoints' && parts.length === 4 && parts[2] === 'deliveries') { ctx.id = parts[1]; ctx.did = parts[3]; page = deliveryPage; }
  else page = notFoundPage;
  main.setAttribute('aria-busy', 'true');
  Promise.resolve(page(ctx)).catch((e) => {
    if (e && e.status === 401) return;
    console.warn('page failed', e);
    replace(main, h('h1', { tabindex: '-1', text: 'Something went wrong' }), h('p', { class: 'alert alert-error', role: 'alert', text: e.message || String(e) }));
  }).finally(() => main.removeAttribute('aria-busy'));
}

function notFoundPage({ main: m }) {
  document.title = 'Not found · Zaits console';
  replace(m, h('h1', { tabindex: '-1', text: 'Page not found' }), h('p', {}, h('a', { href: '#/endpoints', text: 'Back to the endpoints' })));
  m.querySelector('h1').focus();
}

window.addEventListener('hashchange', render);
window.addEventListener('console:unauthorized', (e) => {
  notice = `Please sign in again: ${e.detail}`;
  go('/signin');
});
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
render();
