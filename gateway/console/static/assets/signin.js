// Sign-in: an account API key, checked against the API, kept in sessionStorage.
import { h, replace } from './dom.js';
import { api, routes, session } from './api.js';
import { field, formAlert, showErrors, clearErrors } from './form.js';

export function signInPage(ctx) {
  document.title = 'Sign in · Zaits console';
  // No name attribute: a native form submission could never carry the key.
  const key = h('input', { type: 'password', id: 'api-key', autocomplete: 'off', spellcheck: 'false', 'aria-required': 'true' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Sign in' });
  const form = h('form', { class: 'card narrow', novalidate: true, 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title', tabindex: '-1', text: 'Sign in' }),
    ctx.notice ? h('p', { class: 'alert alert-info', role: 'status', text: ctx.notice }) : null,
    h('p', { class: 'muted', text: 'Use an account API key (zk_…). It is kept in this browser tab only and removed when you sign out or close the tab.' }),
    formAlert(),
    field({ label: 'API key', name: 'api_key', input: key }),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const value = key.value.trim();
    if (!value) {
      showErrors(form, { message: 'Enter an API key.', details: [{ field: 'api_key', issue: 'is required' }] });
      return;
    }
    submit.disabled = true;
    try {
      await api('GET', routes.endpoints, { key: value, query: { per_page: 1 } });
      session.set(value);
      ctx.go('/endpoints');
    } catch (err) {
      showErrors(form, { message: err.message, details: [{ field: 'api_key', issue: err.message }] });
    } finally {
      submit.disabled = false;
    }
  });
  key.removeAttribute('name');
  replace(ctx.main, form);
  key.focus();
}
