// Modal dialogs on the native <dialog> element: focus moves in, Tab stays
// inside, Escape cancels, and focus returns to where it was.
import { h } from './dom.js';

function open(dialog, initial) {
  const back = document.activeElement;
  document.body.append(dialog);
  dialog.showModal();
  (initial || dialog.querySelector('button'))?.focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (back && back.isConnected) back.focus();
      resolve(dialog.returnValue);
    }, { once: true });
  });
}

// confirm({title, text, confirm, danger}) resolves true when confirmed.
export async function confirmDialog({ title, text, confirm = 'Confirm', danger = false }) {
  const titleId = 'dlg-title';
  const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel', onclick: () => d.close('cancel') });
  const ok = h('button', { type: 'button', class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, text: confirm, onclick: () => d.close('ok') });
  const d = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
    h('h2', { id: titleId, text: title }),
    h('p', { text }),
    h('div', { class: 'actions' }, cancel, ok));
  return (await open(d, cancel)) === 'ok';
}

// secretDialog({title, secret, text}) shows a secret once, with a copy button.
export async function secretDialog({ title, secret, text }) {
  const titleId = 'dlg-secret-title';
  const out = h('input', { type: 'text', readonly: true, class: 'secret', value: secret, id: 'dlg-secret', spellcheck: 'false', 'aria-describedby': 'dlg-secret-note' });
  const status = h('p', { class: 'muted', role: 'status' });
  const copy = h('button', {
    type: 'button', class: 'btn', text: 'Copy secret',
    onclick: async () => {
      try { await navigator.clipboard.writeText(secret); status.textContent = 'Copied to the clipboard.'; } catch { out.select(); status.textContent = 'Select the text and copy it yourself (Ctrl+C).'; }
    },
  });
  const done = h('button', { type: 'button', class: 'btn btn-primary', text: 'I have saved it', onclick: () => d.close('done') });
  const d = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
    h('h2', { id: titleId, text: title }),
    h('p', { id: 'dlg-secret-note', text }),
    h('label', { for: 'dlg-secret', text: 'Signing secret' }), out, status,
    h('div', { class: 'actions' }, copy, done));
  await open(d, out);
}
