// Charts as inline SVG: bars (stacked) and lines over a stats series
// ([{start, total, success, failed, p50_ms, p99_ms}], evenly spaced buckets).
import { h, s } from './dom.js';

const W = 480;
const H = 170;
const M = { top: 10, right: 10, bottom: 24, left: 52 };
const IW = W - M.left - M.right;
const IH = H - M.top - M.bottom;

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function timeLabel(t, spanMs) {
  const d = new Date(t);
  const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return spanMs > 2 * 86400e3 ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : hm;
}

// frame draws the axes and grid; x(t) and y(v) map into the plot.
function frame({ t0, t1, max, fmt }) {
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * IW;
  const y = (v) => M.top + IH - (v / max) * IH;
  const g = s('g', { class: 'axes' });
  for (const f of [0, 0.5, 1]) {
    const v = max * f;
    g.append(s('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'tick', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end', text: fmt(v) }));
  }
  const n = 5;
  for (let i = 0; i <= n; i++) {
    const t = t0 + ((t1 - t0) * i) / n;
    g.append(s('text', { class: 'tick', x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle', text: timeLabel(t, t1 - t0) }));
  }
  g.append(s('line', { class: 'axis', x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }));
  return { g, x, y };
}

function figure(title, summary, svg, legend) {
  return h('figure', { class: 'chart' },
    h('figcaption', { text: title }),
    svg,
    legend.length ? h('ul', { class: 'legend', 'aria-hidden': 'true' }, legend.map((l) => h('li', {}, h('span', { class: `swatch ${l.cls}` }), l.label))) : null,
    h('p', { class: 'visually-hidden', text: summary }));
}

function svgRoot(label) {
  return s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'chart-svg' });
}

// barChart stacks the given keys of each bucket; scale converts a count
// into the plotted value (per minute).
export function barChart({ title, series, bucketMs, stacks, scale = 1, fmt }) {
  const t0 = series.length ? Date.parse(series[0].start) : Date.now();
  const t1 = series.length ? Date.parse(series[series.length - 1].start) + bucketMs : t0 + bucketMs;
  let max = 0;
  let sum = 0;
  for (const b of series) {
    const v = stacks.reduce((a, st) => a + st.value(b), 0) * scale;
    max = Math.max(max, v);
    sum += b.total;
  }
  max = niceMax(max);
  const svg = svgRoot(`${title}: at most ${fmt(max)}, ${sum} deliveries in the window`);
  const { g, x, y } = frame({ t0, t1, max, fmt });
  svg.append(g);
  const bw = Math.max(0.5, (IW / Math.max(series.length, 1)) * 0.85);
  const bars = s('g', { class: 'bars' });
  for (const b of series) {
    const t = Date.parse(b.start);
    let base = 0;
    const parts = stacks.map((st) => {
      const v = st.value(b) * scale;
      const r = v > 0 ? s('rect', { class: st.cls, x: x(t), width: bw, y: y(base + v), height: y(base) - y(base + v) }) : null;
      base += v;
      return r;
    }).filter(Boolean);
    if (parts.length) {
      const grp = s('g', {}, s('title', { text: `${new Date(t).toLocaleString()}: ${b.total} deliveries, ${b.success} succeeded, ${b.failed} failed` }), parts);
      bars.append(grp);
    }
  }
  svg.append(bars);
  return figure(title, svg.getAttribute('aria-label'), svg, stacks.map((st) => ({ cls: st.cls, label: st.label })));
}

// lineChart draws one line per key; null values leave gaps. The scale is
// fixedMax, or the largest value rounded up (at least minMax).
export function lineChart({ title, series, bucketMs, lines, fmt, fixedMax, minMax = 0 }) {
  const t0 = series.length ? Date.parse(series[0].start) : Date.now();
  const t1 = series.length ? Date.parse(series[series.length - 1].start) + bucketMs : t0 + bucketMs;
  let max = 0;
  let points = 0;
  for (const b of series) for (const l of lines) { const v = l.value(b); if (v !== null && v !== undefined) { max = Math.max(max, v); points++; } }
  max = fixedMax || niceMax(Math.max(max, minMax));
  const latest = [...series].reverse().find((b) => lines[0].value(b) !== null && lines[0].value(b) !== undefined);
  const summary = points === 0 ? `${title}: no data in the window` : `${title}: ${lines.map((l) => `${l.label} latest ${latest && l.value(latest) !== null ? fmt(l.value(latest)) : 'none'}`).join(', ')}; scale up to ${fmt(max)}`;
  const svg = svgRoot(summary);
  const { g, x, y } = frame({ t0, t1, max, fmt });
  svg.append(g);
  for (const l of lines) {
    let d = '';
    let pen = false;
    const dots = s('g', { class: `dots ${l.cls}` });
    for (const b of series) {
      const v = l.value(b);
      if (v === null || v === undefined) { pen = false; continue; }
      const px = x(Date.parse(b.start) + bucketMs / 2);
      const py = y(Math.min(v, max));
      d += `${pen ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`;
      pen = true;
      dots.append(s('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: 2 }, s('title', { text: `${new Date(Date.parse(b.start)).toLocaleString()}: ${l.label} ${fmt(v)}` })));
    }
    svg.append(s('path', { class: `line ${l.cls}`, d: d || 'M0,0' }), dots);
  }
  if (points === 0) svg.append(s('text', { class: 'nodata', x: M.left + IW / 2, y: M.top + IH / 2, 'text-anchor': 'middle', text: 'No data in this window' }));
  return figure(title, summary, svg, lines.map((l) => ({ cls: l.cls, label: l.label })));
}
