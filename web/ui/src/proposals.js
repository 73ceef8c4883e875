// Proposals from the assistant: YAML, rationale and diff, with approve/reject
// for approvers. The server decides who may approve; a refusal is shown as is.
import { h, render } from './dom.js';
import { api, listOf } from './api.js';
import { fmtAge } from './format.js';

export class Proposals {
  constructor(el, { toast }) {
    this.el = el;
    this.toast = toast;
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
      const r = await api.decide(p.id, decision);
      this.messages.set(p.id, { kind: 'ok', text: decision === 'approve' ? 'Approved.' : 'Rejected.' });
      if (r && typeof r === 'object' && r.id === p.id) Object.assign(p, r);
      else p.state = decision === 'approve' ? 'approved' : 'rejected';
    } catch (err) {
      this.messages.set(p.id, { kind: 'error', text: err.forbidden ? `Refused: ${err.message}` : `Could not ${decision}: ${err.message}` });
    }
    this._render();
  }

  _render() {
    if (this.status === 'loading' && !this.items.length) { render(this.el, h('p', { class: 'muted' }, 'Loading…')); return; }
    if (this.status === 'n/a') {
      render(this.el, h('div', { class: 'empty-state' }, h('h3', {}, 'Proposals not available'), h('p', {}, 'This server does not run the assistant.')));
      return;
    }
    const head = h('div', { class: 'form-row' }, h('span', { class: 'muted' }, `${this.items.length} proposal${this.items.length === 1 ? '' : 's'}`),
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
    const pending = !p.state || p.state === 'pending' || p.state === 'proposed' || p.state === 'open';
    return h('li', { class: 'proposal' + (opened ? ' open' : ''), dataset: { id: String(p.id) } },
      h('button', { type: 'button', class: 'proposal-head', onclick: () => { this.open = opened ? null : p.id; this._render(); } },
        h('span', { class: 'state ' + (p.state ?? 'pending') }, p.state ?? 'pending'),
        h('span', { class: 'proposal-title' }, p.title ?? p.summary ?? `${p.kind ?? 'change'} ${p.target ?? ''}`),
        h('span', { class: 'muted right' }, p.createdAt ? fmtAge(p.createdAt) : '')),
      opened ? h('div', { class: 'proposal-body' },
        p.rationale ? [h('h4', {}, 'Rationale'), h('p', {}, String(p.rationale))] : null,
        p.diff ? [h('h4', {}, 'Diff'), diffBlock(String(p.diff))] : null,
        p.yaml ? [h('h4', {}, 'Resource'), h('pre', { class: 'code' }, String(p.yaml))] : null,
        pending ? h('div', { class: 'row' },
          h('button', { type: 'button', class: 'primary approve', onclick: () => this.decide(p, 'approve') }, 'Approve'),
          h('button', { type: 'button', class: 'danger reject', onclick: () => this.decide(p, 'reject') }, 'Reject')) : null,
        msg ? h('p', { class: msg.kind === 'error' ? 'error decision' : 'ok decision', role: 'status' }, msg.text) : null) : null);
  }
}

function diffBlock(text) {
  return h('pre', { class: 'code diff' }, text.split('\n').map((line) =>
    h('span', { class: line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : '' }, line + '\n')));
}
