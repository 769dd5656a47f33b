// Form fields with labels, hints and a place for the API's error message.
import { h, uid, replace } from './dom.js';

// field({label, name, input, hint}) wraps a control with its label, an
// optional hint and an error slot; name is the API field the errors name.
export function field({ label, name, input, hint }) {
  const id = input.id || uid(`f-${name}`);
  input.id = id;
  input.name = input.name || name;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint`, text: hint }) : null;
  const errEl = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  input.setAttribute('aria-describedby', [hintEl && hintEl.id, errEl.id].filter(Boolean).join(' '));
  return h('div', { class: 'field', 'data-field': name }, h('label', { for: id, text: label }), input, hintEl, errEl);
}

// fieldset({legend, name, children, hint}) is a group (checkboxes) with one error slot.
export function fieldset({ legend, name, children, hint }) {
  const errId = uid(`g-${name}-error`);
  const hintEl = hint ? h('p', { class: 'hint', id: `${errId}-hint`, text: hint }) : null;
  const errEl = h('p', { class: 'field-error', id: errId, hidden: true });
  return h('fieldset', { class: 'field', 'data-field': name, 'aria-describedby': [hintEl && hintEl.id, errId].filter(Boolean).join(' ') },
    h('legend', { text: legend }), hintEl, children, errEl);
}

// formAlert() is the form-level error box (role=alert).
export function formAlert() {
  return h('div', { class: 'alert alert-error', role: 'alert', hidden: true, 'data-form-alert': '' });
}

// clearErrors(form) hides every error of the form.
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) { el.hidden = true; el.textContent = ''; }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const a = form.querySelector('[data-form-alert]');
  if (a) { a.hidden = true; a.textContent = ''; }
}

// showErrors(form, err) puts each detail of the API's error at the field it
// names (details[].field: "url", "events[2]", …), the message in the form's
// alert, and focuses the first invalid control.
export function showErrors(form, err) {
  clearErrors(form);
  let first = null;
  const unplaced = [];
  for (const d of err.details || []) {
    const name = String(d.field || '').split(/[.[]/)[0];
    const box = name && form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (!box) { unplaced.push(d); continue; }
    const slot = box.querySelector('.field-error');
    const text = d.field === name ? d.issue : `${d.field}: ${d.issue}`;
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    slot.hidden = false;
    const control = box.querySelector('input, select, textarea');
    if (control && box.tagName !== 'FIELDSET') control.setAttribute('aria-invalid', 'true');
    if (box.tagName === 'FIELDSET') box.setAttribute('aria-invalid', 'true');
    first = first || control;
  }
  const a = form.querySelector('[data-form-alert]');
  if (a) {
    const extra = unplaced.map((d) => `${d.field}: ${d.issue}`).join('; ');
    replace(a, err.message, extra && err.message.indexOf(extra) < 0 ? ` (${extra})` : '');
    a.hidden = false;
  }
  (first || a)?.focus?.();
  if (!first && a) { a.tabIndex = -1; a.focus(); }
}
