// Who the dashboard acts as: /api/v1/whoami, and sign-in with an API token
// exchanged for an HttpOnly session cookie (POST /api/v1/login), so the page
// and its websocket never keep the token.
import { h, render } from './dom.js';
import { api } from './api.js';

export class Session {
  constructor({ root, button, menu, onChange, toast }) {
    Object.assign(this, { root, button, menu, onChange, toast });
    this.who = null; // {name, role, method, authEnabled}
    this.error = '';
    // The server refuses everything but the login without a credential (401):
    // nothing can be shown until someone signs in.
    this.mustSignIn = false;
    button.addEventListener('click', () => this.toggle());
    document.addEventListener('click', (ev) => { if (!root.contains(ev.target)) this.toggle(false); });
  }

  get signedIn() { return !!this.who && this.who.method && this.who.method !== 'none'; }

  async load() {
    try {
      this.who = await api.whoami();
      this.root.hidden = false;
      this.mustSignIn = false;
    } catch (err) {
      // No auth on this server (404): nothing to sign in to. 401: not signed in.
      this.who = null;
      this.root.hidden = err.notAvailable;
      this.mustSignIn = err.status === 401;
    }
    this._render();
  }

  toggle(open = this.menu.hidden) {
    this.menu.hidden = !open;
    this.button.setAttribute('aria-expanded', String(open));
    if (open) this.menu.querySelector('input')?.focus();
  }

  /** A request was refused with 401: offer to sign in. */
  required() {
    if (this.root.hidden) return;
    this.who = null;
    this.mustSignIn = true;
    this.error = 'Sign in to continue.';
    this._render();
    this.toggle(true);
  }

  async signIn(token) {
    this.error = '';
    try {
      await api.login(token);
      await this.load();
      this.toggle(false);
      this.onChange?.();
    } catch (err) {
      this.error = err.status === 401 || err.status === 403 ? 'That token was not accepted.' : `Could not sign in: ${err.message}`;
      this._render();
    }
  }

  async signOut() {
    try { await api.logout(); } catch (err) { this.toast?.(`Could not sign out: ${err.message}`); }
    await this.load();
    this.onChange?.();
  }

  _render() {
    const w = this.who;
    this.button.textContent = this.signedIn ? `${w.name} · ${w.role}` : w && !w.authEnabled ? 'Open access' : 'Sign in';
    this.button.dataset.role = this.signedIn ? w.role : w && !w.authEnabled ? 'open' : 'none';
    if (w && !w.authEnabled) {
      render(this.menu, h('p', { class: 'muted' }, 'This server runs without authentication (loopback only): everyone may approve.'));
      return;
    }
    if (this.signedIn) {
      render(this.menu, h('p', {}, 'Signed in as ', h('strong', {}, w.name), ` (${w.role})`),
        h('button', { type: 'button', onclick: () => this.signOut() }, 'Sign out'));
      return;
    }
    const input = h('input', { type: 'password', placeholder: 'API token', 'aria-label': 'API token', autocomplete: 'off' });
    render(this.menu, h('form', { class: 'signin', onsubmit: (ev) => { ev.preventDefault(); if (input.value.trim()) this.signIn(input.value.trim()); } },
      h('label', {}, 'API token', input),
      h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
      this.error ? h('p', { class: 'error', role: 'alert' }, this.error) : null));
  }
}
