// "What changed" between two times: the server's diff when it has one,
// otherwise two snapshots compared in the browser.
import { h, render } from './dom.js';
import { api, listOf } from './api.js';
import { diffGraphs } from './model.js';
import { fmtRate, fmtPct, fmtMs, nameOfId } from './format.js';

const AGO = [['5m', 5], ['15m', 15], ['30m', 30], ['1h', 60]];

export class Changes {
  constructor(el, { model, state, highlight, toast }) {
    this.el = el;
    this.model = model;
    this.state = state;
    this.highlightFn = highlight;
    this.toast = toast;
    this.result = null;
    this.fromAgo = 15;
    this.busy = false;
    this.built = false;
  }

  activate() { if (!this.built) this._render(); }

  async compare() {
    const now = Date.now();
    const to = new Date(this.model.end ? Date.parse(this.model.end) : now);
    const from = new Date(to.getTime() - this.fromAgo * 60000);
    this.busy = true;
    this._render();
    try {
      let items;
      try {
        const d = await api.diff({ from: from.toISOString(), to: to.toISOString(), view: this.state.view });
        items = normaliseServerDiff(d);
      } catch (err) {
        if (!err.notAvailable) throw err;
        const [a, b] = await Promise.all([
          api.graph({ view: this.state.view, window: this.state.window, at: from.toISOString() }),
          api.graph({ view: this.state.view, window: this.state.window, at: to.toISOString() }),
        ]);
        items = diffGraphs(a, b, { th: this.state.thresholds });
      }
      this.result = { items, from, to };
    } catch (err) {
      this.result = { error: err.message };
    } finally {
      this.busy = false;
      this._render();
    }
  }

  _render() {
    this.built = true;
    const controls = h('div', { class: 'form-row' },
      h('label', {}, 'Compare now with ',
        h('select', { onchange: (ev) => { this.fromAgo = Number(ev.target.value); } },
          AGO.map(([l, m]) => h('option', { value: m, selected: m === this.fromAgo }, l + ' ago')))),
      h('button', { type: 'button', class: 'primary', disabled: this.busy, onclick: () => this.compare() }, this.busy ? 'Comparing…' : 'Compare'));
    const r = this.result;
    let body;
    if (!r) body = h('p', { class: 'muted' }, 'Shows the edges and nodes that appeared, disappeared, got slower or started failing.');
    else if (r.error) body = h('p', { class: 'error' }, `Could not compare: ${r.error}`);
    else if (!r.items.length) body = h('p', { class: 'muted' }, 'No significant change between the two times.');
    else {
      body = h('ul', { class: 'changes' }, r.items.map((it) => h('li', {},
        h('button', { type: 'button', class: 'change-row', onclick: () => this.highlightFn([it.id]) },
          h('span', { class: 'change ' + it.change.replace(/\s+/g, '-') }, it.change),
          h('span', { class: 'change-label' }, this._label(it)),
          h('span', { class: 'mono muted right' }, this._figure(it))))));
    }
    render(this.el, controls, body);
  }

  _label(it) {
    const d = it.after ?? it.before ?? {};
    if (it.kind === 'edge' && d.source) {
      const name = (id) => this.model.nodes.get(id)?.label ?? nameOfId(id);
      return `${name(d.source)} → ${name(d.target)}`;
    }
    return d.label ?? (it.label !== it.id ? it.label : null) ?? nameOfId(it.id);
  }

  _figure(it) {
    const a = it.before?.stats, b = it.after?.stats;
    if (!a || !b) return '';
    if (it.change.startsWith('errors')) return `${fmtPct(a.errorRatio)} → ${fmtPct(b.errorRatio)}`;
    if (it.change.startsWith('traffic')) return `${fmtRate(a.rps)} → ${fmtRate(b.rps)}/s`;
    if (it.change === 'slower') return `p95 ${fmtMs(a.p95)} → ${fmtMs(b.p95)}`;
    return '';
  }
}

// The server's moved-metric lists: which stat each one is about and how to name the change.
const SERVER_CHANGES = [
  ['p95', 'p95', (c) => 'slower'],
  ['errorRatio', 'errorRatio', (c) => (c.after >= c.before ? 'errors up' : 'errors down')],
  ['rate', 'rps', (c) => (c.after >= c.before ? 'traffic up' : 'traffic down')],
];

/**
 * Accepts meshlens' GET /api/v1/graph/diff ({nodes:{added,removed}, edges:{added,removed},
 * changes:{rate,errorRatio,p95}}), {added:{nodes,edges}, removed:{...}, changed:[...]}, or a
 * flat list of {id, kind, change}.
 */
export function normaliseServerDiff(d) {
  if (d && d.nodes && !Array.isArray(d.nodes) && d.changes && !Array.isArray(d.changes)) {
    const out = [];
    for (const k of ['nodes', 'edges']) {
      for (const change of ['added', 'removed']) {
        for (const data of d[k]?.[change] ?? []) {
          out.push({ id: data.id, kind: k.slice(0, -1), change, [change === 'added' ? 'after' : 'before']: data, label: data.label ?? data.id });
        }
      }
    }
    const seen = new Set();
    for (const [list, stat, name] of SERVER_CHANGES) {
      for (const c of d.changes[list] ?? []) {
        if (seen.has(c.id)) continue;
        seen.add(c.id);
        const side = (v) => ({ id: c.id, source: c.source, target: c.target, stats: { [stat]: v } });
        out.push({ id: c.id, kind: 'edge', change: name(c), before: side(c.before), after: side(c.after), label: c.id });
      }
    }
    return out;
  }
  const flat = listOf(d, 'changes');
  if (flat.length) return flat.map((x) => ({ id: x.id, kind: x.kind ?? 'edge', change: x.change ?? 'changed', before: x.before, after: x.after, label: x.label ?? x.id }));
  const out = [];
  for (const change of ['added', 'removed']) {
    for (const k of ['nodes', 'edges']) {
      for (const x of d?.[change]?.[k] ?? []) {
        const data = typeof x === 'string' ? { id: x } : (x.data ?? x);
        out.push({ id: data.id, kind: k.slice(0, -1), change, [change === 'added' ? 'after' : 'before']: data, label: data.label ?? data.id });
      }
    }
  }
  for (const x of d?.changed ?? d?.updated ?? []) {
    const data = x.data ?? x;
    out.push({ id: data.id, kind: data.source ? 'edge' : (x.kind ?? 'edge'), change: x.change ?? 'changed', before: x.before, after: x.after ?? data, label: data.label ?? data.id });
  }
  return out;
}
