// The client-side copy of the graph: the last snapshot with every delta the
// live feed pushed applied to it. Rendering reads from here, so a paused view
// can catch up at once when resumed.
import { fmtRate, fmtPct, fmtMs } from './format.js';

export class GraphModel {
  constructor() {
    this.nodes = new Map(); // id -> data
    this.edges = new Map();
    this.view = null;
    this.start = null;
    this.end = null;
    this.namespaces = new Set(); // every namespace ever seen, for the filter
  }

  /** Replaces everything by a graph response; returns the change set against the previous content. */
  loadSnapshot(graph) {
    const prevNodes = this.nodes, prevEdges = this.edges;
    this.nodes = new Map();
    this.edges = new Map();
    this.view = graph.view ?? this.view;
    this.start = graph.start ?? null;
    this.end = graph.end ?? graph.timestamp ?? null;
    for (const ns of graph.namespaces ?? []) if (ns) this.namespaces.add(ns);
    const els = graph.elements ?? {};
    for (const n of els.nodes ?? []) this._putNode(n.data ?? n);
    for (const e of els.edges ?? []) this._putEdge(e.data ?? e);
    return {
      added: { nodes: [...this.nodes.keys()].filter((id) => !prevNodes.has(id)), edges: [...this.edges.keys()].filter((id) => !prevEdges.has(id)) },
      updated: { nodes: [...this.nodes.keys()].filter((id) => prevNodes.has(id)), edges: [...this.edges.keys()].filter((id) => prevEdges.has(id)) },
      removed: { nodes: [...prevNodes.keys()].filter((id) => !this.nodes.has(id)), edges: [...prevEdges.keys()].filter((id) => !this.edges.has(id)) },
    };
  }

  /** Applies a live delta; returns the ids it touched, grouped as in the delta. */
  applyDelta(delta) {
    const ch = { added: { nodes: [], edges: [] }, updated: { nodes: [], edges: [] }, removed: { nodes: [], edges: [] } };
    if (delta.end) this.end = delta.end;
    for (const id of delta.removed?.edges ?? []) if (this.edges.delete(id)) ch.removed.edges.push(id);
    for (const id of delta.removed?.nodes ?? []) {
      if (!this.nodes.delete(id)) continue;
      ch.removed.nodes.push(id);
      // An edge cannot outlive its ends, even if the server forgot to say so.
      for (const [eid, e] of this.edges) {
        if (e.source === id || e.target === id) { this.edges.delete(eid); ch.removed.edges.push(eid); }
      }
    }
    for (const kind of ['added', 'updated']) {
      for (const n of delta[kind]?.nodes ?? []) {
        const d = n.data ?? n;
        const existed = this.nodes.has(d.id);
        this._putNode(existed && kind === 'updated' ? { ...this.nodes.get(d.id), ...d } : d);
        ch[existed ? 'updated' : 'added'].nodes.push(d.id);
      }
    }
    for (const kind of ['added', 'updated']) {
      for (const e of delta[kind]?.edges ?? []) {
        const d = e.data ?? e;
        if (!this.nodes.has(d.source) || !this.nodes.has(d.target)) continue; // dangling: skip
        const existed = this.edges.has(d.id);
        this._putEdge(existed && kind === 'updated' ? { ...this.edges.get(d.id), ...d } : d);
        ch[existed ? 'updated' : 'added'].edges.push(d.id);
      }
    }
    return ch;
  }

  _putNode(d) {
    if (d?.id == null) return;
    this.nodes.set(d.id, d);
    if (d.namespace) this.namespaces.add(d.namespace);
  }

  _putEdge(d) {
    if (d?.id == null || d.source == null || d.target == null) return;
    this.edges.set(d.id, d);
  }

  /** Edges entering and leaving a node. */
  neighbours(id) {
    const callers = [], callees = [];
    for (const e of this.edges.values()) {
      if (e.target === id) callers.push(e);
      if (e.source === id) callees.push(e);
    }
    return { callers, callees };
  }
}

/** The text shown on an edge for a label mode. */
export function edgeLabel(stats, mode) {
  if (!stats || mode === 'none') return '';
  switch (mode) {
    case 'rps': return stats.l4Only && !(stats.rps > 0) ? '' : fmtRate(stats.rps) + ' rps';
    case 'errors': return stats.requests > 0 ? fmtPct(stats.errorRatio) : '';
    case 'p50': return stats.requests > 0 ? fmtMs(stats.p50) : '';
    case 'p95': return stats.requests > 0 ? fmtMs(stats.p95) : '';
    case 'p99': return stats.requests > 0 ? fmtMs(stats.p99) : '';
    case 'mtls': return mtlsLabel(stats.mtlsShare);
    default: return '';
  }
}

/** Padlock for full mTLS, a partial marker for mixed traffic, nothing when unknown. */
export function mtlsLabel(share) {
  if (share == null || share < 0) return '';
  // Text, not an emoji: canvas labels have no emoji font on many servers.
  if (share >= 0.999) return 'mTLS';
  if (share > 0) return 'mTLS ' + fmtPct(share);
  return '';
}

/**
 * Decides which elements are shown. opts: namespaces (Set, empty = all),
 * hideIdle, search (case-insensitive substring of label/id).
 * Returns { nodes: Set, edges: Set, matches: Set } of ids.
 */
export function visibleSet(model, { namespaces = new Set(), hideIdle = false, search = '' } = {}, healthOfEdge = () => 'healthy') {
  const nodes = new Set(), edges = new Set(), matches = new Set();
  const nsOK = (n) => namespaces.size === 0 || namespaces.has(n.namespace);
  for (const e of model.edges.values()) {
    if (hideIdle && healthOfEdge(e) === 'idle') continue;
    const s = model.nodes.get(e.source), t = model.nodes.get(e.target);
    if (!s || !t) continue;
    // As in the server's filter: an edge is kept when either end is in a selected namespace.
    if (!nsOK(s) && !nsOK(t)) continue;
    edges.add(e.id);
    nodes.add(s.id);
    nodes.add(t.id);
  }
  for (const n of model.nodes.values()) {
    if (nodes.has(n.id)) continue;
    if (!nsOK(n)) continue;
    if (hideIdle) continue; // a node with no shown edge is idle in this window
    nodes.add(n.id);
  }
  const q = search.trim().toLowerCase();
  if (q) {
    for (const id of nodes) {
      const n = model.nodes.get(id);
      const hay = [n.label, n.id, n.workload, n.app, n.service, n.namespace].filter(Boolean).join(' ').toLowerCase();
      if (hay.includes(q)) matches.add(id);
    }
  }
  return { nodes, edges, matches };
}

/**
 * What changed between two graph responses, computed in the browser when the
 * server's diff endpoint is not there. Items: { id, kind: node|edge, change, before, after, label }.
 */
export function diffGraphs(from, to, { rateChange = 0.5, th } = {}) {
  const idx = (g, k) => new Map((g?.elements?.[k] ?? []).map((x) => [(x.data ?? x).id, x.data ?? x]));
  const out = [];
  for (const k of ['nodes', 'edges']) {
    const a = idx(from, k), b = idx(to, k);
    const kind = k === 'nodes' ? 'node' : 'edge';
    for (const [id, d] of b) if (!a.has(id)) out.push({ id, kind, change: 'added', after: d, label: d.label ?? id });
    for (const [id, d] of a) if (!b.has(id)) out.push({ id, kind, change: 'removed', before: d, label: d.label ?? id });
    if (kind !== 'edge') continue;
    for (const [id, d] of b) {
      const p = a.get(id);
      if (!p) continue;
      const s0 = p.stats ?? {}, s1 = d.stats ?? {};
      const thr = th ?? { degraded: 0.001, failing: 0.1 };
      const cls = (r) => (r >= thr.failing ? 2 : r >= thr.degraded ? 1 : 0);
      if (cls(s1.errorRatio ?? 0) !== cls(s0.errorRatio ?? 0)) {
        out.push({ id, kind, change: (s1.errorRatio ?? 0) > (s0.errorRatio ?? 0) ? 'errors up' : 'errors down', before: p, after: d, label: id });
        continue;
      }
      const r0 = s0.rps ?? 0, r1 = s1.rps ?? 0;
      if (r0 > 0 && Math.abs(r1 - r0) / r0 >= rateChange) {
        out.push({ id, kind, change: r1 > r0 ? 'traffic up' : 'traffic down', before: p, after: d, label: id });
        continue;
      }
      const l0 = s0.p95 ?? 0, l1 = s1.p95 ?? 0;
      if (l0 > 0 && l1 / l0 >= 1.5) out.push({ id, kind, change: 'slower', before: p, after: d, label: id });
    }
  }
  return out;
}
