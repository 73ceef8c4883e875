// Anomalies and incidents: a list with severity and age; selecting one
// highlights the part of the graph involved and shows the root-cause ranking.
import { h, render } from './dom.js';
import { api, listOf } from './api.js';
import { fmtAge, fmtPct, nameOfId } from './format.js';

const SEV_ORDER = { critical: 0, high: 1, major: 1, warning: 2, medium: 2, minor: 3, low: 3, info: 4 };

/** The graph ids an anomaly or incident concerns, whatever field names it uses. */
export function involvedIds(a) {
  const ids = new Set();
  const add = (v) => { if (typeof v === 'string' && v) ids.add(v); else if (Array.isArray(v)) v.forEach(add); };
  for (const k of ['node', 'nodeId', 'edge', 'edgeId', 'nodes', 'edges', 'nodeIds', 'edgeIds', 'elements']) add(a?.[k]);
  for (const m of a?.anomalies ?? []) if (m && typeof m === 'object') involvedIds(m).forEach((x) => ids.add(x));
  return [...ids];
}

/** Graph nodes a root-cause entry points at: by id, or by service/app/workload name. */
export function rootCauseNodes(model, rc) {
  if (!rc) return [];
  if (rc.node && model.nodes.has(rc.node)) return [rc.node];
  if (rc.id && model.nodes.has(rc.id)) return [rc.id];
  const name = rc.service ?? rc.name;
  if (!name) return [];
  const [svc, ns] = String(name).split('.');
  const out = [];
  for (const n of model.nodes.values()) {
    if (ns && n.namespace && n.namespace !== ns) continue;
    if ([n.service, n.app, n.workload, n.label].some((v) => v && (v === name || v === svc || String(v).split('.')[0] === svc))) out.push(n.id);
  }
  return out;
}

export class Anomalies {
  constructor(el, { model, state, highlight, select, toast }) {
    this.el = el;
    this.model = model;
    this.state = state;
    this.highlightFn = highlight;
    this.selectFn = select;
    this.toast = toast;
    this.items = new Map(); // key -> item (incidents and anomalies)
    this.selected = null;
    this.status = { incidents: 'loading', anomalies: 'loading' };
  }

  activate() { this.load(); }

  async load() {
    const get = async (what, fn) => {
      try {
        const resp = await fn();
        for (const it of listOf(resp, what)) this._put(what === 'incidents' ? 'incident' : 'anomaly', it);
        this.status[what] = 'ok';
      } catch (err) {
        this.status[what] = err.notAvailable ? 'n/a' : err.message;
      }
    };
    await Promise.all([get('incidents', api.incidents), get('anomalies', api.anomalies)]);
    this._render();
  }

  /** An event from the live feed. */
  push(msg) {
    const item = msg.payload ?? msg.incident ?? msg.anomaly ?? msg.item ?? msg;
    this._put(msg.type, item);
    this._render();
  }

  _put(type, it) {
    if (!it || typeof it !== 'object') return;
    const id = it.id ?? JSON.stringify([it.kind, it.node, it.edge, it.since]);
    this.items.set(type + ':' + id, { ...it, _type: type, _key: type + ':' + id });
  }

  /** Open anomalies and incidents that concern a graph element. */
  involving(id) {
    return [...this.items.values()].filter((a) => !isResolved(a) && involvedIds(a).includes(id));
  }

  clearSelection() {
    this.selected = null;
    this.highlightFn([]);
    this._render();
  }

  /** After a redraw, the highlight must be put back on the new elements. */
  reapplyHighlight() {
    if (!this.selected) return;
    const it = this.items.get(this.selected);
    if (it) this._highlight(it);
  }

  _highlight(it) {
    const roots = (it.rootCauses ?? []).slice(0, 1).flatMap((rc) => rootCauseNodes(this.model, rc));
    this.highlightFn(involvedIds(it), roots);
  }

  _choose(it) {
    if (this.selected === it._key) { this.clearSelection(); return; }
    this.selected = it._key;
    this._highlight(it);
    this._render();
  }

  _render() {
    const open = [...this.items.values()].filter((a) => !isResolved(a));
    const badge = document.getElementById('anomaly-count');
    if (badge) { badge.hidden = open.length === 0; badge.textContent = String(open.length); }
    const all = [...this.items.values()].sort((a, b) =>
      (isResolved(a) - isResolved(b)) || (a._type === b._type ? 0 : a._type === 'incident' ? -1 : 1)
      || ((SEV_ORDER[a.severity] ?? 5) - (SEV_ORDER[b.severity] ?? 5)) || (Date.parse(b.since ?? 0) - Date.parse(a.since ?? 0)));
    if (all.length === 0) {
      const na = this.status.incidents === 'n/a' && this.status.anomalies === 'n/a';
      const err = [this.status.incidents, this.status.anomalies].find((s) => s !== 'ok' && s !== 'n/a' && s !== 'loading');
      render(this.el, h('div', { class: 'empty-state' },
        h('h3', {}, na ? 'Anomaly detection not available' : 'No anomalies'),
        h('p', {}, na ? 'This server does not run the detectors.' : err ? `Could not load: ${err}` : 'Everything looks normal. New anomalies appear here as they are detected.')));
      return;
    }
    render(this.el, h('ul', { class: 'anomaly-list' }, all.map((it) => this._item(it))));
  }

  _item(it) {
    const chosen = this.selected === it._key;
    const ids = involvedIds(it);
    const what = ids.slice(0, 3).map((id) => this._name(id)).join(', ') + (ids.length > 3 ? ` +${ids.length - 3}` : '');
    return h('li', { class: 'anomaly' + (chosen ? ' chosen' : '') + (isResolved(it) ? ' resolved' : ''), dataset: { key: it._key } },
      h('button', { type: 'button', class: 'anomaly-head', onclick: () => this._choose(it) },
        h('span', { class: 'sev ' + (it.severity ?? 'info') }, it.severity ?? 'info'),
        h('span', { class: 'anomaly-kind' }, (it._type === 'incident' ? 'Incident · ' : '') + (it.title ?? it.kind ?? 'anomaly')),
        h('span', { class: 'muted right' }, it.since ? fmtAge(it.since) : '')),
      h('div', { class: 'anomaly-sub muted' }, what || '–', it.state ? ` · ${it.state}` : ''),
      chosen ? this._detail(it) : null);
  }

  _name(id) {
    const n = this.model.nodes.get(id);
    if (n) return n.label || id;
    const e = this.model.edges.get(id);
    if (e) return `${this.model.nodes.get(e.source)?.label ?? nameOfId(e.source)} → ${this.model.nodes.get(e.target)?.label ?? nameOfId(e.target)}`;
    return nameOfId(id);
  }

  _detail(it) {
    const rcs = it.rootCauses ?? [];
    const max = Math.max(1e-9, ...rcs.map((r) => r.score ?? 0));
    return h('div', { class: 'anomaly-detail' },
      it.explanation ? h('p', {}, it.explanation) : null,
      it.score != null ? h('p', { class: 'muted' }, `Score ${Number(it.score).toFixed(2)}`) : null,
      rcs.length ? [h('h4', {}, 'Likely root cause'), h('ol', { class: 'rootcauses' }, rcs.map((rc, i) => {
        const nodes = rootCauseNodes(this.model, rc);
        return h('li', { class: i === 0 ? 'top' : '' },
          h('div', { class: 'rc-row' },
            nodes.length ? h('button', { type: 'button', class: 'link', onclick: () => this.selectFn({ kind: 'node', id: nodes[0] }) }, rc.service ?? rc.name ?? nodes[0]) : h('strong', {}, rc.service ?? rc.name ?? '?'),
            h('span', { class: 'score-bar' }, h('span', { style: { width: `${Math.max(4, ((rc.score ?? 0) / max) * 100)}%` } })),
            h('span', { class: 'mono muted' }, rc.score != null ? (rc.score <= 1 ? fmtPct(rc.score) : Number(rc.score).toFixed(2)) : '')),
          rc.explanation ? h('p', { class: 'muted' }, rc.explanation) : null);
      }))] : null);
  }
}

function isResolved(a) {
  return a.state === 'resolved' || a.state === 'closed' || !!a.resolvedAt;
}
