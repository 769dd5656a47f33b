// The endpoint list, and the create / edit form.
import { h, replace, badge, fmtRate, timeEl, fmtAgo, announce } from './dom.js';
import { api, routes, eventTypes, ApiError } from './api.js';
import { field, fieldset, formAlert, showErrors, clearErrors } from './form.js';
import { secretDialog } from './dialog.js';
import { pager } from './pager.js';

const PER_PAGE = 25;

export const reasons = {
  gone: 'the receiver answered 410 Gone',
  failing: 'every delivery failed for too long',
};

// statusCell(ep) says whether the endpoint is active, or why it is disabled.
export function statusCell(ep) {
  if (ep.active) return badge('success', 'active');
  const why = ep.disabled_reason ? reasons[ep.disabled_reason] || ep.disabled_reason : 'disabled by a person';
  return h('span', {}, badge('failed', 'disabled'), ' ', h('span', { class: 'muted', text: why }),
    ep.disabled_at ? h('span', { class: 'muted' }, ' since ', timeEl(ep.disabled_at)) : null);
}

export async function endpointsPage(ctx) {
  document.title = 'Endpoints · Zaits console';
  const page = Math.max(1, parseInt(ctx.query.get('page') || '1', 10) || 1);
  const active = ctx.query.get('active') || '';
  const filter = h('select', { id: 'filter-active' },
    h('option', { value: '', text: 'All endpoints' }),
    h('option', { value: 'true', text: 'Active only', selected: active === 'true' }),
    h('option', { value: 'false', text: 'Disabled only', selected: active === 'false' }));
  filter.addEventListener('change', () => ctx.go(`/endpoints${filter.value ? `?active=${filter.value}` : ''}`));
  const body = h('div', { id: 'endpoint-list', 'aria-live': 'polite' }, h('p', { class: 'muted', text: 'Loading endpoints…' }));
  replace(ctx.main,
    h('div', { class: 'page-head' },
      h('h1', { tabindex: '-1', text: 'Endpoints' }),
      h('a', { class: 'btn btn-primary', href: '#/endpoints/new', text: 'New endpoint' })),
    ctx.notice ? h('p', { class: 'alert alert-info', role: 'status', text: ctx.notice }) : null,
    h('div', { class: 'toolbar' }, h('label', { for: 'filter-active', text: 'Show' }), filter),
    body);
  ctx.main.querySelector('h1').focus();

  let r;
  try {
    r = await api('GET', routes.endpoints, { query: { page, per_page: PER_PAGE, active } });
  } catch (e) {
    if (e.status === 401) return;
    replace(body, h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
    return;
  }
  if (r.data.length === 0) {
    replace(body, h('p', { class: 'empty', text: active ? 'No endpoints match.' : 'No endpoints yet. Create one to start receiving events.' }));
    return;
  }
  const rows = r.data.map((ep) => h('tr', { 'data-endpoint': ep.id },
    h('td', {}, h('a', { href: `#/endpoints/${encodeURIComponent(ep.id)}`, class: 'url', text: ep.url }),
      ep.description ? h('div', { class: 'muted small', text: ep.description }) : null),
    h('td', {}, h('ul', { class: 'tags' }, ep.events.map((ev) => h('li', { class: 'tag', text: ev })))),
    h('td', {}, statusCell(ep)),
    h('td', { class: 'num', text: fmtRate(ep.success_rate) }),
    h('td', {}, ep.last_delivery ? h('span', { title: ep.last_delivery }, fmtAgo(ep.last_delivery)) : h('span', { class: 'muted', text: 'never' }))));
  replace(body,
    h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden', text: `Webhook endpoints, ${r.pagination.total} in all` }),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'URL and description' }),
        h('th', { scope: 'col', text: 'Events' }),
        h('th', { scope: 'col', text: 'Status' }),
        h('th', { scope: 'col', class: 'num', text: 'Success rate (7 d)' }),
        h('th', { scope: 'col', text: 'Last delivery' }))),
      h('tbody', {}, rows)),
    pager(r.pagination, (p) => ctx.go(`/endpoints?${new URLSearchParams({ ...(active ? { active } : {}), page: p })}`), 'Endpoint pages'));
}

// The events control: the catalogue as checkboxes by category, plus other
// patterns (wildcards) as text. Both are the API's "events" field.
async function eventsControl(selected) {
  const catalogue = await eventTypes();
  const known = new Set(catalogue.map((e) => e.name));
  const byCat = new Map();
  for (const e of catalogue) {
    if (!byCat.has(e.category)) byCat.set(e.category, []);
    byCat.get(e.category).push(e);
  }
  const boxes = [];
  const groups = [...byCat.entries()].map(([cat, list]) => h('div', { class: 'event-group' },
    h('p', { class: 'event-cat', text: cat }),
    list.map((e) => {
      const id = `ev-${e.name.replace(/[^a-z0-9]/gi, '-')}`;
      const box = h('input', { type: 'checkbox', id, value: e.name, checked: selected.includes(e.name) });
      boxes.push(box);
      return h('div', { class: 'check' }, box, h('label', { for: id }, h('code', { text: e.name }), h('span', { class: 'muted small', text: ` ${e.description}` })));
    })));
  const other = h('input', { type: 'text', id: 'events-other', spellcheck: 'false', value: selected.filter((e) => !known.has(e)).join(', ') });
  const set = fieldset({
    legend: 'Events', name: 'events',
    hint: 'Tick the events to receive, or type patterns such as document.* or * below.',
    children: [h('div', { class: 'event-grid' }, groups),
      h('div', { class: 'inline-field' }, h('label', { for: 'events-other', text: 'Other event patterns (comma-separated)' }), other)],
  });
  const value = () => [...boxes.filter((b) => b.checked).map((b) => b.value),
    ...other.value.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean)];
  return { el: set, value };
}

// endpointFormPage creates (ctx.id unset) or edits an endpoint.
export async function endpointFormPage(ctx) {
  const editing = !!ctx.id;
  document.title = `${editing ? 'Edit endpoint' : 'New endpoint'} · Zaits console`;
  replace(ctx.main, h('p', { class: 'muted', text: 'Loading…' }));
  let ep = { url: '', description: '', events: [], active: true, ordering: 'default' };
  let version = null;
  try {
    if (editing) {
      const r = await api('GET', routes.endpoint(ctx.id));
      ep = r.data;
      version = r.data.version;
    }
  } catch (e) {
    if (e.status === 401) return;
    replace(ctx.main, h('h1', { tabindex: '-1', text: 'Edit endpoint' }), h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
    return;
  }
  let events;
  try {
    events = await eventsControl(ep.events);
  } catch (e) {
    if (e.status === 401) return;
    replace(ctx.main, h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
    return;
  }
  const url = h('input', { type: 'url', value: ep.url, spellcheck: 'false', autocomplete: 'off', 'aria-required': 'true', placeholder: 'https://example.com/webhooks' });
  const description = h('textarea', { rows: '2', text: ep.description || '' });
  const active = h('input', { type: 'checkbox', checked: ep.active });
  const ordering = h('select', {},
    h('option', { value: 'default', text: 'Default: retries may overtake later events', selected: ep.ordering !== 'strict' }),
    h('option', { value: 'strict', text: 'Strict: later events wait behind a failing one', selected: ep.ordering === 'strict' }));
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', text: editing ? 'Save changes' : 'Create endpoint' });
  const cancelHref = editing ? `#/endpoints/${encodeURIComponent(ctx.id)}` : '#/endpoints';
  const activeId = 'f-active';
  active.id = activeId;
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'form-title' },
    h('h1', { id: 'form-title', tabindex: '-1', text: editing ? 'Edit endpoint' : 'New endpoint' }),
    editing ? h('p', { class: 'muted' }, 'Endpoint ', h('code', { text: ctx.id })) : null,
    formAlert(),
    field({ label: 'URL', name: 'url', input: url, hint: 'Where the events are POSTed (https).' }),
    field({ label: 'Description', name: 'description', input: description, hint: 'Optional, at most 512 characters.' }),
    events.el,
    h('div', { class: 'field check', 'data-field': 'active' }, active, h('label', { for: activeId, text: 'Active: deliver events to this endpoint' }), h('p', { class: 'field-error', hidden: true })),
    field({ label: 'Ordering', name: 'ordering', input: ordering }),
    h('div', { class: 'actions' }, h('a', { class: 'btn', href: cancelHref, text: 'Cancel' }), submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { url: url.value.trim(), description: description.value, events: events.value(), active: active.checked, ordering: ordering.value };
    submit.disabled = true;
    try {
      if (editing) {
        const changed = {};
        for (const k of Object.keys(body)) if (JSON.stringify(body[k]) !== JSON.stringify(ep[k] ?? (k === 'description' ? '' : undefined))) changed[k] = body[k];
        if (Object.keys(changed).length === 0) { ctx.go(`/endpoints/${encodeURIComponent(ctx.id)}`); return; }
        await api('PUT', routes.endpoint(ctx.id), { body: changed, headers: { 'If-Match': `"${version}"` } });
        announce('Endpoint saved.');
        ctx.go(`/endpoints/${encodeURIComponent(ctx.id)}`);
      } else {
        const r = await api('POST', routes.endpoints, { body });
        await secretDialog({
          title: 'Endpoint created: save its signing secret',
          secret: r.data.secret,
          text: 'Receivers verify each delivery with this secret. It is shown only now; rotate it to get a new one.',
        });
        ctx.go(`/endpoints/${encodeURIComponent(r.data.id)}`);
      }
    } catch (err) {
      if (err.status === 401) return;
      showErrors(form, err instanceof ApiError ? err : { message: String(err), details: [] });
    } finally {
      submit.disabled = false;
    }
  });
  replace(ctx.main, form);
  form.querySelector('h1').focus();
}
