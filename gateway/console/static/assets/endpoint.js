// One endpoint: its settings and actions (test, edit, rotate, delete,
// recover, replay), charts of its deliveries, and the delivery list with
// filters and pages, refreshed while the page is open.
import { h, replace, badge, fmtRate, fmtMS, timeEl, announce } from './dom.js';
import { api, routes, eventTypes } from './api.js';
import { field, formAlert, showErrors, clearErrors } from './form.js';
import { confirmDialog, secretDialog } from './dialog.js';
import { statusCell } from './endpoints.js';
import { barChart, lineChart } from './chart.js';
import { pager } from './pager.js';
import { jobsSection } from './recovery.js';

const REFRESH_MS = 5000;
const PER_PAGE = 25;

// The chart windows: window and bucket of GET …/stats.
export const windows = [
  { value: '1h', label: 'Last hour', bucket: '1m' },
  { value: '6h', label: 'Last 6 hours', bucket: '5m' },
  { value: '24h', label: 'Last 24 hours', bucket: '15m' },
  { value: '7d', label: 'Last 7 days', bucket: '2h' },
];

const durMS = (d) => parseInt(d, 10) * { m: 60e3, h: 3600e3, d: 86400e3 }[d.slice(-1)];

export async function endpointPage(ctx) {
  const id = ctx.id;
  const enc = encodeURIComponent(id);
  const q = ctx.query;
  const state = {
    status: q.get('status') || '',
    eventType: q.get('event_type') || '',
    page: Math.max(1, parseInt(q.get('page') || '1', 10) || 1),
    window: windows.some((w) => w.value === q.get('window')) ? q.get('window') : '1h',
    paused: false,
  };
  const abort = new AbortController();
  const timers = [];
  ctx.onCleanup(() => { abort.abort(); timers.forEach(clearInterval); });
  const call = (method, path, opts = {}) => api(method, path, { signal: abort.signal, ...opts });
  const pushQuery = () => ctx.setQuery({ status: state.status, event_type: state.eventType, page: state.page > 1 ? state.page : '', window: state.window !== '1h' ? state.window : '' });

  // The page is laid out at once and filled as the answers arrive.
  document.title = 'Endpoint · Zaits console';
  const title = h('h1', { tabindex: '-1', class: 'url', text: id });
  const crumb = h('span', { 'aria-current': 'page', text: id });
  let ep = null;
  // fillTypes adds the catalogue's event types to a select.
  const fillTypes = (sel, cat, selected) => {
    const have = new Set([...sel.options].map((o) => o.value));
    for (const e of cat) if (!have.has(e.name)) sel.append(h('option', { value: e.name, text: e.name, selected: e.name === selected }));
  };

  // Summary.
  const summary = h('dl', { class: 'facts' }, h('div', {}, h('dt', { text: 'ID' }), h('dd', {}, h('code', { text: id }))),
    h('div', {}, h('dt', { text: 'Settings' }), h('dd', { class: 'muted', text: 'Loading…' })));
  const renderSummary = () => replace(summary,
    h('div', {}, h('dt', { text: 'ID' }), h('dd', {}, h('code', { text: ep.id }))),
    h('div', {}, h('dt', { text: 'Description' }), h('dd', { text: ep.description || '—' })),
    h('div', {}, h('dt', { text: 'Events' }), h('dd', {}, h('ul', { class: 'tags' }, ep.events.map((e) => h('li', { class: 'tag', text: e }))))),
    h('div', {}, h('dt', { text: 'Status' }), h('dd', {}, statusCell(ep))),
    h('div', {}, h('dt', { text: 'Ordering' }), h('dd', { text: ep.ordering })),
    h('div', {}, h('dt', { text: 'Success rate (7 d)' }), h('dd', { text: fmtRate(ep.success_rate) })),
    h('div', {}, h('dt', { text: 'Last delivery' }), h('dd', {}, ep.last_delivery ? timeEl(ep.last_delivery) : 'never')),
    h('div', {}, h('dt', { text: 'Updated' }), h('dd', {}, timeEl(ep.updated_at))));

  // Actions: test, edit, rotate, delete.
  const testType = h('select', { id: 'test-event-type' }, h('option', { value: 'test', text: 'test (sample event)' }));
  const testBtn = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Send test event' });
  const testResult = h('div', { class: 'test-result', id: 'test-result', 'aria-live': 'polite' });
  const testForm = h('form', { class: 'inline-form', novalidate: true, 'aria-label': 'Send a test event' },
    formAlert(), field({ label: 'Test event type', name: 'event_type', input: testType }), testBtn);
  testForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(testForm);
    testBtn.disabled = true;
    replace(testResult, h('p', { class: 'muted', text: 'Sending…' }));
    try {
      const r = (await call('POST', routes.test(id), { body: { event_type: testType.value } })).data;
      const ok = r.response_status >= 200 && r.response_status < 300;
      replace(testResult,
        h('p', {}, badge(ok ? 'success' : 'failed', r.response_status ? `HTTP ${r.response_status}` : 'no response'),
          ` in ${fmtMS(r.response_time)}`, r.error ? h('span', { class: 'muted', text: ` · ${r.error_code}: ${r.error}` }) : null,
          ' · ', h('a', { href: `#/endpoints/${enc}/deliveries/${encodeURIComponent(r.delivery_id)}`, text: 'view delivery' })),
        h('p', { class: 'small muted', text: 'Response body' }),
        h('pre', { class: 'excerpt', tabindex: '0', role: 'region', 'aria-label': 'Response body of the test', text: r.response_body || '(empty)' }));
      announce(`Test sent: ${r.response_status ? `HTTP ${r.response_status}` : 'no response'} in ${r.response_time} ms`);
      setTimeout(() => { loadDeliveries().catch(() => {}); loadStats().catch(() => {}); loadEndpoint().catch(() => {}); }, 1500);
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      testResult.replaceChildren();
      showErrors(testForm, err);
    } finally {
      testBtn.disabled = false;
    }
  });
  const rotateBtn = h('button', {
    type: 'button', class: 'btn', text: 'Rotate secret',
    onclick: async () => {
      const yes = await confirmDialog({ title: 'Rotate the signing secret?', text: 'A new secret is made and shown once. The old one keeps signing during the overlap window, so receivers can switch without losing deliveries.', confirm: 'Rotate secret' });
      if (!yes) return;
      try {
        const r = (await call('POST', routes.rotate(id))).data;
        if (ep) ep.version = r.version;
        await secretDialog({
          title: 'New signing secret',
          secret: r.secret,
          text: r.previous_secret_expires_at ? `It is shown only now. The previous secret keeps signing until ${new Date(r.previous_secret_expires_at).toLocaleString()}.` : 'It is shown only now. The previous secret no longer signs.',
        });
      } catch (err) {
        if (err.name === 'AbortError' || err.status === 401) return;
        replace(actionMsg, h('p', { class: 'alert alert-error', role: 'alert', text: err.message }));
      }
    },
  });
  const deleteBtn = h('button', {
    type: 'button', class: 'btn btn-danger', text: 'Delete endpoint',
    onclick: async () => {
      const yes = await confirmDialog({ title: 'Delete this endpoint?', text: `${ep ? ep.url : id} stops receiving events at once. Its delivery history stays readable for the retention period only through the API. This cannot be undone.`, confirm: 'Delete endpoint', danger: true });
      if (!yes) return;
      try {
        await call('DELETE', routes.endpoint(id), { headers: ep ? { 'If-Match': `"${ep.version}"` } : {} });
        ctx.flash(`Endpoint ${ep ? ep.url : id} was deleted.`);
        ctx.go('/endpoints');
      } catch (err) {
        if (err.name === 'AbortError' || err.status === 401) return;
        replace(actionMsg, h('p', { class: 'alert alert-error', role: 'alert', text: err.message }));
      }
    },
  });
  const actionMsg = h('div', {});
  const actions = h('section', { class: 'card', 'aria-labelledby': 'actions-title' },
    h('h2', { id: 'actions-title', text: 'Actions' }),
    h('div', { class: 'toolbar' }, h('a', { class: 'btn', href: `#/endpoints/${enc}/edit`, text: 'Edit endpoint' }), rotateBtn, deleteBtn),
    actionMsg, testForm, testResult);

  // Charts.
  const windowSel = h('select', { id: 'chart-window' }, windows.map((w) => h('option', { value: w.value, text: w.label, selected: w.value === state.window })));
  const charts = h('div', { class: 'charts', id: 'charts', 'aria-live': 'off' }, h('p', { class: 'muted', text: 'Loading charts…' }));
  const chartTotals = h('p', { class: 'muted small', id: 'chart-totals' });
  windowSel.addEventListener('change', () => { state.window = windowSel.value; pushQuery(); loadStats().catch(() => {}); });
  const chartsSection = h('section', { class: 'card', 'aria-labelledby': 'charts-title' },
    h('div', { class: 'section-head' }, h('h2', { id: 'charts-title', text: 'Deliveries over time' }),
      h('div', { class: 'inline-field' }, h('label', { for: 'chart-window', text: 'Window' }), windowSel)),
    chartTotals, charts);

  let chartsDrawn = false;
  async function loadStats() {
    const w = windows.find((x) => x.value === state.window);
    const st = (await call('GET', routes.stats(id), { query: { window: w.value, bucket: w.bucket } })).data;
    const bucketMs = durMS(w.bucket);
    const perMin = 60e3 / bucketMs;
    const series = st.series || [];
    replace(chartTotals, `${st.total} deliveries in the window: ${st.success} succeeded, ${st.failed} failed, ${st.retrying} retrying · success rate ${fmtRate(st.success_rate)}`,
      st.response_time ? ` · attempt time p50 ${fmtMS(st.response_time.p50)}, p99 ${fmtMS(st.response_time.p99)}` : '');
    replace(charts,
      barChart({
        title: 'Deliveries per minute', series, bucketMs, scale: perMin, fmt: (v) => (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)),
        stacks: [
          { label: 'succeeded', cls: 'c-success', value: (b) => b.success },
          { label: 'failed', cls: 'c-failed', value: (b) => b.failed },
          { label: 'retrying', cls: 'c-retrying', value: (b) => b.total - b.success - b.failed },
        ],
      }),
      lineChart({
        title: 'Success rate', series, bucketMs, fixedMax: 1, fmt: (v) => `${Math.round(v * 100)} %`,
        lines: [{ label: 'success rate', cls: 'c-rate', value: (b) => (b.success + b.failed > 0 ? b.success / (b.success + b.failed) : null) }],
      }),
      lineChart({
        title: 'Publish → receipt latency', series, bucketMs, fmt: fmtMS, minMax: 10,
        lines: [{ label: 'p50', cls: 'c-p50', value: (b) => b.p50_ms }, { label: 'p99', cls: 'c-p99', value: (b) => b.p99_ms }],
      }));
    if (!chartsDrawn) {
      chartsDrawn = true;
      performance.mark('console:charts-rendered');
    }
  }

  // Deliveries.
  const statusSel = h('select', { id: 'filter-status' },
    [['', 'Any status'], ['success', 'Succeeded'], ['failed', 'Failed'], ['retrying', 'Retrying']].map(([v, t]) => h('option', { value: v, text: t, selected: v === state.status })));
  const typeSel = h('select', { id: 'filter-event-type' }, h('option', { value: '', text: 'Any event type' }),
    h('option', { value: 'test', text: 'test', selected: state.eventType === 'test' }),
    state.eventType && state.eventType !== 'test' ? h('option', { value: state.eventType, text: state.eventType, selected: true }) : null);
  const onFilter = () => { state.status = statusSel.value; state.eventType = typeSel.value; state.page = 1; pushQuery(); loadDeliveries().catch(() => {}); };
  statusSel.addEventListener('change', onFilter);
  typeSel.addEventListener('change', onFilter);
  const pauseBtn = h('button', {
    type: 'button', class: 'btn btn-quiet', 'aria-pressed': 'false', text: 'Pause auto-refresh',
    onclick: () => {
      state.paused = !state.paused;
      pauseBtn.setAttribute('aria-pressed', String(state.paused));
      pauseBtn.textContent = state.paused ? 'Resume auto-refresh' : 'Pause auto-refresh';
      if (!state.paused) refresh();
    },
  });
  const updated = h('span', { class: 'muted small', id: 'deliveries-updated' });
  const list = h('div', { id: 'deliveries', 'data-rendered': '0' }, h('p', { class: 'muted', text: 'Loading deliveries…' }));
  const listError = h('div', {});
  const deliveriesSection = h('section', { class: 'card', 'aria-labelledby': 'deliveries-title' },
    h('div', { class: 'section-head' }, h('h2', { id: 'deliveries-title', text: 'Deliveries' }), h('div', { class: 'refresh' }, updated, pauseBtn)),
    h('div', { class: 'toolbar filters' },
      h('div', { class: 'inline-field' }, h('label', { for: 'filter-status', text: 'Status' }), statusSel),
      h('div', { class: 'inline-field' }, h('label', { for: 'filter-event-type', text: 'Event type' }), typeSel)),
    listError, list);

  let seq = 0;
  let firstRender = true;
  async function loadDeliveries() {
    const mine = ++seq;
    const r = await call('GET', routes.deliveries(id), { query: { status: state.status, event_type: state.eventType, page: state.page, per_page: PER_PAGE } });
    if (mine !== seq) return; // a newer request (filter change) is on its way
    listError.replaceChildren();
    const focusKey = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    if (r.data.length === 0) {
      replace(list, h('p', { class: 'empty', text: state.status || state.eventType ? 'No deliveries match these filters.' : 'No deliveries yet.' }),
        state.page > 1 ? pager(r.pagination, goPage, 'Delivery pages') : null);
    } else {
      replace(list,
        h('table', { class: 'table' },
          h('caption', { class: 'visually-hidden', text: `Deliveries, newest first, page ${r.pagination.page}` }),
          h('thead', {}, h('tr', {}, ['Delivery', 'Event type', 'Status', 'Attempts', 'Response', 'Time', 'Accepted', 'Last attempt']
            .map((t, i) => h('th', { scope: 'col', class: i >= 3 && i <= 5 ? 'num' : null, text: t })))),
          h('tbody', {}, r.data.map((d) => h('tr', { 'data-delivery': d.id },
            h('td', {}, h('a', { href: `#/endpoints/${enc}/deliveries/${encodeURIComponent(d.id)}`, class: 'mono', 'data-focus-key': d.id, 'aria-label': `Delivery ${d.id}, ${d.event_type}, ${d.status}`, text: d.id })),
            h('td', {}, h('code', { text: d.event_type })),
            h('td', {}, badge(d.status)),
            h('td', { class: 'num', text: d.attempts }),
            h('td', { class: 'num', text: d.response_status ?? '—', title: d.error_message || null }),
            h('td', { class: 'num', text: fmtMS(d.response_time) }),
            h('td', {}, timeEl(d.created_at)),
            h('td', {}, timeEl(d.last_attempt)))))),
        pager(r.pagination, goPage, 'Delivery pages'));
    }
    list.dataset.rendered = String(r.data.length);
    list.dataset.page = String(r.pagination.page);
    list.dataset.total = String(r.pagination.total);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}${state.paused ? '' : ' · refreshes every 5 s'}`;
    if (focusKey) list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
    if (firstRender) {
      firstRender = false;
      performance.mark('console:deliveries-rendered');
    }
  }
  function goPage(p) {
    state.page = p;
    pushQuery();
    loadDeliveries().then(() => list.querySelector('a, button:not([disabled])')?.focus()).catch(() => {});
  }

  const jobs = jobsSection({ id, call });

  replace(ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/endpoints', text: 'Endpoints' }), ' / ', crumb),
    title, summary, actions, deliveriesSection, chartsSection, jobs.el);
  title.focus();

  const show = (where) => (e) => {
    if (e.name === 'AbortError' || e.status === 401) return;
    replace(where, h('p', { class: 'alert alert-error', role: 'alert', text: e.message }));
  };
  const gone = (e) => {
    if (e.name === 'AbortError' || e.status === 401) return;
    if (e.status !== 404) { show(actionMsg)(e); return; }
    abort.abort();
    timers.forEach(clearInterval);
    replace(ctx.main, h('h1', { tabindex: '-1', text: 'Endpoint not found' }),
      h('p', { class: 'alert alert-error', role: 'alert', text: e.message }), h('p', {}, h('a', { href: '#/endpoints', text: 'Back to the endpoints' })));
    ctx.main.querySelector('h1').focus();
  };
  const loadEndpoint = () => call('GET', routes.endpoint(id)).then((r) => {
    ep = r.data;
    document.title = `${ep.url} · Zaits console`;
    title.textContent = ep.url;
    crumb.textContent = ep.url;
    renderSummary();
  });
  // The list first: the endpoint's settings and the stats both read the
  // delivery log too (success rate, last delivery; the series), so they
  // follow it rather than compete with it.
  const first = Promise.all([
    eventTypes().then((cat) => {
      fillTypes(testType, cat, 'test');
      fillTypes(typeSel, cat, state.eventType);
      jobs.setCatalogue(cat);
    }).catch(show(actionMsg)),
    loadDeliveries().catch(show(listError)).then(() => Promise.all([loadEndpoint().catch(gone), loadStats().catch(show(charts))])),
    jobs.load(),
  ]);
  await first;
  if (abort.signal.aborted) return;

  let ticks = 0;
  async function refresh() {
    if (state.paused || document.visibilityState === 'hidden') return;
    ticks++;
    await loadDeliveries().catch(show(listError));
    if (ticks % 3 === 0) {
      await loadStats().catch(show(charts));
      await loadEndpoint().catch(gone);
    }
    await jobs.refresh();
  }
  timers.push(setInterval(() => { refresh().catch(() => {}); }, REFRESH_MS));
}
