// Chat with the assistant; answers link to graph elements.
import { h, render } from './dom.js';
import { api } from './api.js';
import { nameOfId } from './format.js';

function newSession() {
  try {
    let id = sessionStorage.getItem('meshlens.chat');
    if (!id) { id = (crypto.randomUUID?.() ?? String(Math.random()).slice(2)); sessionStorage.setItem('meshlens.chat', id); }
    return id;
  } catch { return String(Math.random()).slice(2); }
}

export class Chat {
  constructor(el, { model, goto, showTab, toast }) {
    this.el = el;
    this.model = model;
    this.goto = goto;
    this.showTab = showTab;
    this.toast = toast;
    this.sessionId = newSession();
    this.messages = [];
    this.busy = false;
    this.unavailable = false;
    this._build();
  }

  activate() { this.input.focus(); }

  _build() {
    this.log = h('div', { class: 'chat-log', role: 'log', 'aria-live': 'polite' });
    this.input = h('textarea', { rows: 2, placeholder: 'Ask about the mesh, e.g. “which service is failing?”', 'aria-label': 'Message',
      onkeydown: (ev) => { if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); this.send(); } } });
    this.button = h('button', { type: 'submit', class: 'primary' }, 'Send');
    const form = h('form', { class: 'chat-form', onsubmit: (ev) => { ev.preventDefault(); this.send(); } }, this.input, this.button);
    render(this.el, h('div', { class: 'chat' }, this.log, form));
    this._renderLog();
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || this.busy) return;
    this.input.value = '';
    this.messages.push({ role: 'user', text });
    this.busy = true;
    this.button.disabled = true;
    this._renderLog();
    try {
      const r = await api.chat(this.sessionId, text);
      const proposals = Array.isArray(r?.proposals) ? r.proposals : [];
      const links = [...(Array.isArray(r?.links) ? r.links : []), ...proposals.map((p) => ({ kind: 'proposal', id: p.id, label: p.title }))];
      this.messages.push({ role: 'assistant', text: String(r?.answer ?? ''), links, engine: r?.engine, fallback: r?.fallback });
      if (proposals.length) this.onProposals?.();
    } catch (err) {
      this.messages.push({ role: 'error', text: err.notAvailable ? 'The assistant is not available on this server.' : `The assistant could not answer: ${err.message}` });
    } finally {
      this.busy = false;
      this.button.disabled = false;
      this._renderLog();
    }
  }

  _renderLog() {
    if (!this.messages.length) {
      render(this.log, h('div', { class: 'empty-state' }, h('h3', {}, 'Ask the assistant'),
        h('p', {}, 'It answers from the live graph, the anomalies and the history, and can propose a fix for you to approve.'),
        h('div', { class: 'chips' }, ['Which service is failing?', 'What changed in the last 15 minutes?', 'Is all traffic mTLS?'].map((q) =>
          h('button', { type: 'button', class: 'chip', onclick: () => { this.input.value = q; this.send(); } }, q)))));
      return;
    }
    render(this.log, this.messages.map((m) => h('div', { class: 'msg ' + m.role },
      h('div', { class: 'msg-text' }, m.text),
      m.fallback ? h('div', { class: 'msg-meta muted' }, `answered by the built-in engine: ${m.fallback}`) : null,
      m.links?.length ? h('div', { class: 'chips' }, m.links.map((l) => this._link(l))) : null)),
    this.busy ? h('div', { class: 'msg assistant pending' }, h('div', { class: 'msg-text muted' }, 'Thinking…')) : null);
    this.log.scrollTop = this.log.scrollHeight;
  }

  _link(l) {
    const kind = l?.kind ?? 'node';
    const id = String(l?.id ?? '');
    const label = l?.label ?? this.model.nodes.get(id)?.label ?? nameOfId(id);
    return h('button', { type: 'button', class: 'chip link-chip', title: `${kind} ${id}`, onclick: () => {
      if (kind === 'node' || kind === 'edge') {
        if (!this.goto(kind, id, l?.view)) this.toast('That element is not in the current graph.', 'info');
      } else if (kind === 'incident' || kind === 'anomaly') { this.showTab('anomalies'); this.openAnomaly?.(kind, id); }
      else if (kind === 'proposal') this.showTab('proposals');
    } }, `${kind}: ${label}`);
  }
}
