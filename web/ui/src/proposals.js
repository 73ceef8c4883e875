// Proposals from the assistant: YAML, rationale and diff, with approve/reject
// for approvers. The server decides who may approve; a refusal is shown as is.
import { h, render } from './dom.js';
import { api, listOf } from './api.js';
import { fmtAge } from './format.js';

export class Proposals {
  constructor(el, { toast, session }) {
    this.el = el;
    this.toast = toast;
    this.session = session;
    this.items = [];
    this.status = 'idle';
    this.open = null;
    this.messages = new Map(); // id -> {kind, text}
  }

  activate() { this.load(); }

  async load() {
    this.status = 'loading';
    if (!this.items.length) this._render();
    try {
      this.items = listOf(await api.proposals(), 'proposals');
      this.status = 'ok';
    } catch (err) {
      this.status = err.notAvailable ? 'n/a' : err.message;
    }
    this._render();
  }

  async decide(p, decision) {
    try {
      // Approval names the exact YAML reviewed: the server applies it only if it still matches.
      const body = decision === 'approve' ? { sha256: await sha256Hex(p.yaml ?? '', p.sha256) } : {};
      const r = await api.decide(p.id, decision, body);
      if (r && typeof r === 'object' && r.id === p.id) Object.assign(p, r);
      else p.status = decision === 'approve' ? 'approved' : 'rejected';
      const applied = p.applied?.error ? ` Apply failed: ${p.applied.error}` : p.applied?.target ? ` Applied to ${p.applied.target}.` : '';
      this.messages.set(p.id, { kind: p.applied?.error ? 'error' : 'ok', text: (decision === 'approve' ? 'Approved.' : 'Rejected.') + applied });
    } catch (err) {
      this.messages.set(p.id, { kind: 'error', text: err.forbidden || err.status === 401 ? `Refused: ${err.message}` : `Could not ${decision}: ${err.message}` });
    }
    this._render();
    this.el.querySelector(`[data-id="${CSS.escape(String(p.id))}"] .decision`)?.scrollIntoView({ block: 'nearest' });
  }

  _render() {
    if (this.status === 'loading' && !this.items.length) { render(this.el, h('p', { class: 'muted' }, 'Loading…')); return; }
    if (this.status === 'n/a') {
      render(this.el, h('div', { class: 'empty-state' }, h('h3', {}, 'Proposals not available'), h('p', {}, 'This server does not run the assistant.')));
      return;
    }
    const who = this.session?.who;
    const head = h('div', { class: 'form-row' }, h('span', { class: 'muted' }, `${this.items.length} proposal${this.items.length === 1 ? '' : 's'}`,
      who?.authEnabled ? ` · acting as ${this.session.signedIn ? `${who.name} (${who.role})` : 'nobody: sign in to approve'}` : ''),
    h('button', { type: 'button', onclick: () => this.load() }, 'Refresh'));
    if (this.status !== 'ok' && this.status !== 'loading') {
      render(this.el, head, h('p', { class: 'error' }, `Could not load proposals: ${this.status}`));
      return;
    }
    if (!this.items.length) {
      render(this.el, head, h('div', { class: 'empty-state' }, h('h3', {}, 'No proposals'), h('p', {}, 'Ask the assistant for a fix; its proposals wait here for approval.')));
      return;
    }
    render(this.el, head, h('ul', { class: 'proposals' }, this.items.map((p) => this._item(p))));
  }

  _item(p) {
    const opened = this.open === p.id;
    const msg = this.messages.get(p.id);
    const status = p.status ?? p.state ?? 'pending';
    const pending = status === 'pending' || status === 'proposed' || status === 'open';
    return h('li', { class: 'proposal' + (opened ? ' open' : ''), dataset: { id: String(p.id) } },
      h('button', { type: 'button', class: 'proposal-head', onclick: () => { this.open = opened ? null : p.id; this._render(); } },
        h('span', { class: 'state ' + status }, status.replace(/_/g, ' ')),
        h('span', { class: 'proposal-title' }, p.title ?? p.summary ?? `${p.kind ?? 'change'} ${p.target ?? ''}`),
        h('span', { class: 'muted right' }, p.createdAt ? fmtAge(p.createdAt) : '')),
      opened ? h('div', { class: 'proposal-body' },
        p.rationale ? [h('h4', {}, 'Rationale'), h('p', {}, String(p.rationale))] : null,
        Array.isArray(p.evidence) && p.evidence.length ? [h('h4', {}, 'Evidence'), h('ul', { class: 'plain evidence' }, p.evidence.map((e) => h('li', {}, String(e))))] : null,
        p.decidedBy ? h('p', { class: 'muted' }, `${status.replace(/_/g, ' ')} by ${p.decidedBy}${p.comment ? `: ${p.comment}` : ''}`) : null,
        p.expiresAt && pending ? h('p', { class: 'muted' }, `Expires ${new Date(p.expiresAt).toLocaleString()}`) : null,
        p.diff ? [h('h4', {}, 'Diff'), diffBlock(String(p.diff))] : null,
        p.yaml ? [h('h4', {}, 'Resource'), h('pre', { class: 'code' }, String(p.yaml))] : null,
        pending ? h('div', { class: 'row' },
          h('button', { type: 'button', class: 'primary approve', onclick: () => this.decide(p, 'approve') }, 'Approve'),
          h('button', { type: 'button', class: 'danger reject', onclick: () => this.decide(p, 'reject') }, 'Reject')) : null,
        msg ? h('p', { class: msg.kind === 'error' ? 'error decision' : 'ok decision', role: 'status' }, msg.text) : null) : null);
  }
}

/** Hex SHA-256 of text; where WebCrypto is missing (plain http off loopback), the server's own hash. */
export async function sha256Hex(text, fallback = '') {
  if (!globalThis.crypto?.subtle) return fallback;
  const buf = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function diffBlock(text) {
  return h('pre', { class: 'code diff' }, text.split('\n').map((line) =>
    h('span', { class: line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : '' }, line + '\n')));
}
