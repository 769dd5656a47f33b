// One delivery: its summary, every attempt, and resend.
import { h, replace, badge, fmtMS, timeEl, announce } from './dom.js';
import { api, routes } from './api.js';

const REFRESH_MS = 5000;

export async function deliveryPage(ctx) {
  const { id, did } = ctx;
  const enc = encodeURIComponent(id);
  const abort = new AbortController();
  let timer = null;
  ctx.onCleanup(() => { abort.abort(); clearInterval(timer); });
  const call = (method, path, opts = {}) => api(method, path, { signal: abort.signal, ...opts });
  document.title = `Delivery ${did} · Zaits console`;
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('a', { href: '#/endpoints', text: 'Endpoints' }), ' / ',
    h('a', { href: `#/endpoints/${enc}`, id: 'crumb-endpoint', text: id }), ' / ',
    h('span', { 'aria-current': 'page', text: did }));
  const title = h('h1', { tabindex: '-1' }, 'Delivery ', h('code', { text: did }));
  const summary = h('dl', { class: 'facts' });
  const attempts = h('div', { id: 'attempts' }, h('p', { class: 'muted', text: 'Loading attempts…' }));
  const resendMsg = h('div', { 'aria-live': 'polite', id: 'resend-result' });
  const resend = h('button', {
    type: 'button', class: 'btn btn-primary', text: 'Resend delivery',
    onclick: async () => {
      resend.disabled = true;
      try {
        const r = (await call('POST', routes.resend(id, did))).data;
        replace(resendMsg, h('p', { class: 'alert alert-info', role: 'status', text: `Queued as attempt ${r.attempt} (${r.status}). It appears below once made.` }));
        announce(`Resend queued as attempt ${r.attempt}`);
        setTimeout(() => load().catch(() => {}), 1500);
      } catch (err) {
        if (err.name === 'AbortError' || err.status === 401) return;
        replace(resendMsg, h('p', { class: 'alert alert-error', role: 'alert', text: err.message }));
      } finally {
        resend.disabled = false;
      }
    },
  });
  replace(ctx.main, crumbs, title, summary,
    h('div', { class: 'toolbar' }, resend, h('a', { class: 'btn', href: `#/endpoints/${enc}`, text: 'Back to the endpoint' })),
    resendMsg,
    h('section', { class: 'card', 'aria-labelledby': 'attempts-title' }, h('h2', { id: 'attempts-title', text: 'Attempts' }), attempts));
  title.focus();

  let status = '';
  async function load() {
    let d;
    try {
      d = (await call('GET', routes.delivery(id, did))).data;
    } catch (e) {
      if (e.name === 'AbortError' || e.status === 401) return;
      replace(attempts, h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
      return;
    }
    status = d.status;
    replace(summary,
      h('div', {}, h('dt', { text: 'Status' }), h('dd', {}, badge(d.status))),
      h('div', {}, h('dt', { text: 'Event' }), h('dd', {}, h('code', { text: d.event_id }))),
      h('div', {}, h('dt', { text: 'Event type' }), h('dd', {}, h('code', { text: d.event_type }))),
      h('div', {}, h('dt', { text: 'Attempts' }), h('dd', { text: d.attempts })),
      h('div', {}, h('dt', { text: 'Accepted' }), h('dd', {}, timeEl(d.created_at))),
      h('div', {}, h('dt', { text: 'Last attempt' }), h('dd', {}, timeEl(d.last_attempt))));
    replace(attempts, h('table', { class: 'table attempts' },
      h('caption', { class: 'visually-hidden', text: 'Attempts, oldest first' }),
      h('thead', {}, h('tr', {}, ['#', 'Time', 'Outcome', 'Response status', 'Latency', 'Error', 'Response excerpt'].map((t, i) => h('th', { scope: 'col', class: i === 0 || i === 3 || i === 4 ? 'num' : null, text: t })))),
      h('tbody', {}, d.attempt_history.map((a) => h('tr', { 'data-attempt': a.attempt },
        h('td', { class: 'num', text: a.attempt }),
        h('td', {}, timeEl(a.attempted_at), a.test ? h('div', { class: 'small muted', text: 'test send' }) : null,
          a.next_retry_at ? h('div', { class: 'small muted' }, 'next retry ', timeEl(a.next_retry_at)) : null),
        h('td', {}, badge(a.status)),
        h('td', { class: 'num', text: a.response_status ?? '—' }),
        h('td', { class: 'num', text: fmtMS(a.response_time) }),
        h('td', {}, a.error_code ? h('code', { text: a.error_code }) : '—', a.error_message ? h('div', { class: 'small', text: a.error_message }) : null),
        h('td', {}, a.response_excerpt ? h('pre', { class: 'excerpt', tabindex: '0', role: 'region', 'aria-label': `Response excerpt of attempt ${a.attempt}`, text: a.response_excerpt }) : h('span', { class: 'muted', text: '(empty)' })))))));
  }
  await load();
  timer = setInterval(() => { if (status === 'retrying' && document.visibilityState !== 'hidden') load().catch(() => {}); }, REFRESH_MS);
}
