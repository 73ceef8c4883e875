// Anomalies and incidents: a list with severity and age; selecting one
// highlights the part of the graph involved and shows the root-cause ranking.
import { h, render } from './dom.js';
import { api, listOf } from './api.js';
import { fmtAge, fmtPct, nameOfId } from './format.js';

const SEV_ORDER = { critical: 0, high: 1, major: 1, warning: 2, medium: 2, minor: 3, low: 3, info: 4 };

/**
 * Graph nodes a node reference stands for in the current view: by id when the
 * views agree, else by name (namespace, workload, app, service), so that an
 * anomaly found on workloads still lights up the app graph.
 */
export function refNodes(model, ref) {
  if (!ref) return [];
  if (typeof ref === 'string') {
    if (model.nodes.has(ref)) return [ref];
    ref = { name: ref };
  }
  if (ref.id && model.nodes.has(ref.id)) return [ref.id];
  const [short, nsFromName] = String(ref.name ?? '').split('.');
  const ns = ref.namespace ?? nsFromName;
  const names = new Set([ref.workload, ref.app, ref.service, ref.name, short].filter(Boolean));
  if (!names.size) return [];
  const out = [];
  for (const n of model.nodes.values()) {
    if (ns && n.namespace && n.namespace !== ns) continue;
    if (ref.workload && n.workload && n.workload !== ref.workload && model.view === 'workload') continue;
    const cand = [n.workload, n.app, n.service, n.label];
    if (cand.some((v) => v && (names.has(v) || names.has(String(v).split('.')[0])))) out.push(n.id);
  }
  return out;
}

/** Graph edges between the nodes two references stand for. */
function refEdges(model, src, dst, protocol) {
  if (src?.id && dst?.id) {
    const id = `${src.id}>${dst.id}>${protocol ?? 'http'}`;
    if (model.edges.has(id)) return [id];
  }
  const a = new Set(refNodes(model, src)), b = new Set(refNodes(model, dst));
  const out = [];
  for (const e of model.edges.values()) if (a.has(e.source) && b.has(e.target)) out.push(e.id);
  return out;
}

/**
 * The graph ids (nodes and edges of the current view) an anomaly or incident
 * concerns. Understands detect's shapes (subject with NodeRefs; incidents
 * with nodes and member anomaly ids) and plain id fields.
 */
export function involvedIds(a, model = null, byId = new Map()) {
  const ids = new Set();
  const add = (v) => {
    if (v == null) return;
    if (Array.isArray(v)) { v.forEach(add); return; }
    if (typeof v === 'object') { if (model) refNodes(model, v).forEach((x) => ids.add(x)); else if (v.id) ids.add(v.id); return; }
    if (typeof v === 'string' && v) { if (model && !model.nodes.has(v) && !model.edges.has(v)) refNodes(model, v).forEach((x) => ids.add(x)); else ids.add(v); }
  };
  for (const k of ['node', 'nodeId', 'edge', 'edgeId', 'nodes', 'edges', 'nodeIds', 'edgeIds', 'elements']) add(a?.[k]);
  const sub = a?.subject;
  if (sub && typeof sub === 'object') {
    if (sub.source && sub.target) {
      if (model) refEdges(model, sub.source, sub.target, sub.protocol).forEach((x) => ids.add(x));
      else ids.add(`${sub.source.id}>${sub.target.id}>${sub.protocol ?? 'http'}`);
      add(sub.source); add(sub.target);
    }
    add(sub.node);
  }
  for (const m of a?.anomalies ?? []) {
    const member = typeof m === 'string' ? byId.get(m) : m;
    if (member && typeof member === 'object') involvedIds(member, model, byId).forEach((x) => ids.add(x));
  }
  return [...ids];
}

/** Graph nodes a root-cause entry points at: {node: NodeRef} from detect, or a service name. */
export function rootCauseNodes(model, rc) {
  if (!rc) return [];
  if (rc.node) return refNodes(model, rc.node);
  if (rc.id && model.nodes.has(rc.id)) return [rc.id];
  const name = rc.service ?? rc.name;
  return name ? refNodes(model, { name: String(name) }) : [];
}

/** The name a root-cause entry is shown with. */
function rootCauseName(rc) {
  return rc.node?.name ?? rc.service ?? rc.name ?? (typeof rc.node === 'string' ? nameOfId(rc.node) : '?');
}

// SUSPECTS_WINDOW is how far back the suspects ranking looks.
const SUSPECTS_WINDOW = '10m';

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
    this.suspects = []; // the server's ranking of what broke in the last minutes
    this.suspectsTimer = null;
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
    await Promise.all([get('incidents', api.incidents), get('anomalies', api.anomalies), this._loadSuspects()]);
    this._render();
  }

  async _loadSuspects() {
    try {
      const resp = await api.suspects(SUSPECTS_WINDOW);
      this.suspects = (resp?.suspects ?? []).filter((rc) => (rc.score ?? 0) > 0).slice(0, 5);
    } catch {
      this.suspects = []; // an older server, or detection off: the section is left out
    }
  }

  /** Refreshes the suspects a moment after detection changed, once per burst. */
  _refreshSuspects() {
    if (this.suspectsTimer) return;
    this.suspectsTimer = setTimeout(async () => {
      this.suspectsTimer = null;
      await this._loadSuspects();
      this._render();
    }, 2000);
  }

  /** An event from the live feed. */
  push(msg) {
    // detect's changes come as {type, payload: {action, anomaly | incident}}.
    const p = msg.payload ?? msg;
    if (p.incident) this._put('incident', p.incident);
    else if (p.anomaly) this._put('anomaly', p.anomaly);
    else if (msg.item) this._put(msg.type, msg.item);
    else if (p.id) this._put(msg.type, p);
    this._refreshSuspects();
    this._render();
    if (this.selected) this.reapplyHighlight();
  }

  _put(type, it) {
    if (!it || typeof it !== 'object') return;
    if (it.mergedInto) { this.items.delete(type + ':' + it.id); return; } // shown as part of the other incident
    const id = it.id ?? JSON.stringify([it.kind, it.node, it.edge, it.since]);
    this.items.set(type + ':' + id, { ...it, _type: type, _key: type + ':' + id });
  }

  /** Open anomalies and incidents that concern a graph element. */
  involving(id) {
    return [...this.items.values()].filter((a) => !isResolved(a) && this._involved(a).includes(id));
  }

  _involved(it) {
    const byId = new Map();
    for (const x of this.items.values()) if (x._type === 'anomaly') byId.set(x.id, x);
    return involvedIds(it, this.model, byId);
  }

  /** Selects an incident or anomaly by id (from a chat link), loading the list first if needed. */
  async open(type, id) {
    const key = type + ':' + id;
    if (!this.items.has(key)) await this.load();
    if (!this.items.has(key)) return;
    this.selected = null;
    this._choose(this.items.get(key));
    this.el.querySelector('.anomaly.chosen')?.scrollIntoView({ block: 'nearest' });
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
    this.highlightFn(this._involved(it), roots);
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
      || ((SEV_ORDER[a.severity] ?? 5) - (SEV_ORDER[b.severity] ?? 5)) || (Date.parse(since(b) ?? 0) - Date.parse(since(a) ?? 0)));
    const suspects = this._suspects();
    if (all.length === 0 && !suspects) {
      const na = this.status.incidents === 'n/a' && this.status.anomalies === 'n/a';
      const err = [this.status.incidents, this.status.anomalies].find((s) => s !== 'ok' && s !== 'n/a' && s !== 'loading');
      render(this.el, h('div', { class: 'empty-state' },
        h('h3', {}, na ? 'Anomaly detection not available' : 'No anomalies'),
        h('p', {}, na ? 'This server does not run the detectors.' : err ? `Could not load: ${err}` : 'Everything looks normal. New anomalies appear here as they are detected.')));
      return;
    }
    render(this.el, suspects, h('ul', { class: 'anomaly-list' }, all.map((it) => this._item(it))));
  }

  /** The suspects section: services most likely behind what broke lately. */
  _suspects() {
    if (this.suspects.length === 0) return null;
    return h('section', { class: 'suspects' },
      h('h4', {}, `Suspects, last ${SUSPECTS_WINDOW}`),
      this._causes(this.suspects));
  }

  /** A ranked list of root causes with score bars and explanations. */
  _causes(rcs) {
    const max = Math.max(1e-9, ...rcs.map((r) => r.score ?? 0));
    return h('ol', { class: 'rootcauses' }, rcs.map((rc, i) => {
      const nodes = rootCauseNodes(this.model, rc);
      return h('li', { class: i === 0 ? 'top' : '' },
        h('div', { class: 'rc-row' },
          nodes.length ? h('button', { type: 'button', class: 'link', onclick: () => this.selectFn({ kind: 'node', id: nodes[0] }) }, rootCauseName(rc)) : h('strong', {}, rootCauseName(rc)),
          h('span', { class: 'score-bar' }, h('span', { style: { width: `${Math.max(4, ((rc.score ?? 0) / max) * 100)}%` } })),
          h('span', { class: 'mono muted' }, rc.score != null ? (rc.score <= 1 ? fmtPct(rc.score) : Number(rc.score).toFixed(2)) : '')),
        rc.explanation ? h('p', { class: 'muted' }, rc.explanation) : null);
    }));
  }

  _item(it) {
    const chosen = this.selected === it._key;
    const ids = this._involved(it).filter((id) => this.model.edges.has(id) || it._type === 'incident' || !String(id).includes('>'));
    const what = subjectText(it) ?? (ids.slice(0, 3).map((id) => this._name(id)).join(', ') + (ids.length > 3 ? ` +${ids.length - 3}` : ''));
    return h('li', { class: 'anomaly' + (chosen ? ' chosen' : '') + (isResolved(it) ? ' resolved' : ''), dataset: { key: it._key } },
      h('button', { type: 'button', class: 'anomaly-head', onclick: () => this._choose(it) },
        h('span', { class: 'sev ' + (it.severity ?? 'info') }, it.severity ?? 'info'),
        h('span', { class: 'anomaly-kind' }, (it._type === 'incident' ? 'Incident · ' : '') + (it.title ?? kindText(it))),
        h('span', { class: 'muted right', title: since(it) ?? '' }, since(it) ? fmtAge(since(it)) : '')),
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
    return h('div', { class: 'anomaly-detail' },
      (it.explanation ?? it.summary) ? h('p', {}, it.explanation ?? it.summary) : null,
      it.score != null ? h('p', { class: 'muted' }, `Score ${Number(it.score).toFixed(2)}`) : null,
      rcs.length ? [h('h4', {}, 'Likely root cause'), this._causes(rcs)] : null);
  }
}

function isResolved(a) {
  return a.state === 'resolved' || a.state === 'closed' || !!a.resolvedAt;
}

function since(a) {
  return a.since ?? a.start ?? a.firedAt ?? null;
}

/** "latency p95 up", "errors.5xx up", "edge new" ... from detect's type/metric/direction. */
function kindText(a) {
  if (a.type || a.metric) return [a.type?.replace(/_/g, ' '), a.metric && a.metric !== a.type ? a.metric : null, a.direction].filter(Boolean).join(' · ');
  return a.kind ?? 'anomaly';
}

function subjectText(a) {
  const s = a.subject;
  if (!s || typeof s !== 'object') return null;
  if (s.source && s.target) return `${s.source.name ?? nameOfId(s.source.id)} → ${s.target.name ?? nameOfId(s.target.id)}`;
  if (s.node) return `${s.node.name ?? nameOfId(s.node.id)}${s.kind === 'node_in' ? ' (inbound)' : s.kind === 'node_out' ? ' (outbound)' : ''}`;
  return null;
}
