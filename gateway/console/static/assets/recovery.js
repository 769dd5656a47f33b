// Recovery for one endpoint: recover its failed deliveries since a time,
// replay the account's events of a time range to it, and the jobs doing so.
import { h, replace, badge, timeEl, announce } from './dom.js';
import { routes } from './api.js';
import { field, formAlert, showErrors, clearErrors } from './form.js';

// rfc3339 turns a datetime-local value (local time) into RFC 3339 UTC.
export function rfc3339(local) {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? local : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// localInput(date) is a datetime-local value for date.
function localInput(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

const jobStatus = { queued: 'retrying', running: 'retrying', completed: 'success', failed: 'failed' };

export function jobsSection({ id, call }) {
  const typeSelects = [];
  const list = h('div', { id: 'jobs' }, h('p', { class: 'muted', text: 'Loading jobs…' }));
  let unavailable = false;
  let active = false;

  function rangeForm({ kind, title, hint, withTypes }) {
    const since = h('input', { type: 'datetime-local', id: `${kind}-since`, value: localInput(new Date(Date.now() - 3600e3)), 'aria-required': 'true' });
    const until = h('input', { type: 'datetime-local', id: `${kind}-until` });
    const types = withTypes ? h('select', { id: `${kind}-event-types`, multiple: true, size: '4' }) : null;
    if (types) typeSelects.push(types);
    const submit = h('button', { type: 'submit', class: 'btn', text: title });
    const form = h('form', { class: 'range-form', novalidate: true, 'aria-labelledby': `${kind}-title` },
      h('h3', { id: `${kind}-title`, text: title }),
      h('p', { class: 'muted small', text: hint }),
      formAlert(),
      h('div', { class: 'row' },
        field({ label: 'Since', name: 'since', input: since }),
        field({ label: 'Until (optional)', name: 'until', input: until })),
      types ? field({ label: 'Event types (optional; none selected: all)', name: 'event_types', input: types }) : null,
      h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const body = { since: rfc3339(since.value) };
      if (until.value) body.until = rfc3339(until.value);
      if (types) {
        const picked = [...types.selectedOptions].map((o) => o.value);
        if (picked.length) body.event_types = picked;
      }
      submit.disabled = true;
      try {
        const job = (await call('POST', kind === 'recover' ? routes.recover(id) : routes.replay(id), { body })).data;
        announce(`${title}: job ${job.id} ${job.status}`);
        unavailable = false;
        await load();
      } catch (err) {
        if (err.name === 'AbortError' || err.status === 401) return;
        showErrors(form, err);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  const el = h('section', { class: 'card', 'aria-labelledby': 'recovery-title' },
    h('h2', { id: 'recovery-title', text: 'Recovery' }),
    h('div', { class: 'row wrap' },
      rangeForm({ kind: 'recover', title: 'Recover failed deliveries', hint: 'Sends again every delivery to this endpoint that failed in the range.' }),
      rangeForm({ kind: 'replay', title: 'Replay events', hint: 'Sends the account\'s events of the range to this endpoint again (backfill).', withTypes: true })),
    h('h3', { text: 'Jobs' }), list);

  async function load() {
    let r;
    try {
      r = await call('GET', routes.jobs(id), { query: { per_page: 10 } });
    } catch (e) {
      if (e.name === 'AbortError' || e.status === 401) return;
      if (e.status === 404 && e.code === 'not_found') {
        unavailable = true;
        replace(list, h('p', { class: 'muted', text: 'Recovery jobs are not available on this gateway yet.' }));
        return;
      }
      replace(list, h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
      return;
    }
    active = r.data.some((j) => j.status === 'queued' || j.status === 'running');
    if (r.data.length === 0) { replace(list, h('p', { class: 'empty', text: 'No recovery jobs yet.' })); return; }
    replace(list, h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden', text: 'Recovery and replay jobs, newest first' }),
      h('thead', {}, h('tr', {}, ['Job', 'Type', 'Status', 'Range', 'Matched', 'Sent', 'Skipped', 'Created', 'Finished'].map((t, i) => h('th', { scope: 'col', class: i >= 4 && i <= 6 ? 'num' : null, text: t })))),
      h('tbody', {}, r.data.map((j) => h('tr', { 'data-job': j.id },
        h('td', {}, h('code', { text: j.id })),
        h('td', { text: j.type + (j.event_types && j.event_types.length ? ` (${j.event_types.join(', ')})` : '') }),
        h('td', {}, badge(jobStatus[j.status] || 'retrying', j.status), j.error ? h('div', { class: 'small field-error-text', text: j.error }) : null),
        h('td', {}, timeEl(j.since), ' – ', j.until ? timeEl(j.until) : 'now'),
        h('td', { class: 'num', text: j.counts?.matched ?? '—' }),
        h('td', { class: 'num', text: j.counts?.sent ?? '—' }),
        h('td', { class: 'num', text: j.counts?.skipped ?? '—' }),
        h('td', {}, timeEl(j.created_at)),
        h('td', {}, j.finished_at ? timeEl(j.finished_at) : '—'))))));
  }

  // setCatalogue fills the event-type choices once the catalogue is read.
  const setCatalogue = (cat) => {
    for (const sel of typeSelects) if (sel.options.length === 0) sel.append(...cat.map((e) => h('option', { value: e.name, text: e.name })));
  };
  return { el, load, setCatalogue, refresh: async () => { if (!unavailable && active) await load(); } };
}
