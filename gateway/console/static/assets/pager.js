// Pagination controls for a list answer's {page, per_page, total}.
import { h } from './dom.js';

export function pager(p, onPage, label) {
  const pages = Math.max(1, Math.ceil(p.total / p.per_page));
  if (pages <= 1 && p.page <= 1) return h('p', { class: 'muted small pager-total', text: `${p.total} in all` });
  const prev = h('button', { type: 'button', class: 'btn', text: 'Previous page', disabled: p.page <= 1, onclick: () => onPage(p.page - 1) });
  const next = h('button', { type: 'button', class: 'btn', text: 'Next page', disabled: p.page >= pages, onclick: () => onPage(p.page + 1) });
  return h('nav', { class: 'pager', 'aria-label': label },
    prev,
    h('span', { class: 'pager-pos', text: `Page ${p.page} of ${pages} · ${p.total} in all` }),
    next);
}
