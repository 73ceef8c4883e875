// Side panel for the selected node or edge.
import { h, render, sparkline } from './dom.js';
import { fmtRate, fmtPct, fmtMs, fmtBytes, fmtAge } from './format.js';
import { healthOf, nodeHealth } from './health.js';
import { api } from './api.js';

export class Details {
  constructor(el, { model, state, select, anomaliesFor }) {
    this.el = el;
    this.model = model;
    this.state = state;
    this.selectFn = select;
    this.anomaliesFor = anomaliesFor;
    this.sel = null;
    this.history = null; // {key, data|error}
    this.lastRefresh = 0;
  }

  show(sel) {
    this.sel = sel;
    this.history = null;
    this._render();
    if (sel) this._loadHistory(sel);
  }

  /** The data under the panel changed (a delta arrived). */
  refresh() {
    if (!this.sel) return;
    // A delta per bucket is rare enough to redraw each time, but not on every search keystroke.
    const now = performance.now();
    if (now - this.lastRefresh < 250) return;
    this.lastRefresh = now;
    this._render();
  }

  async _loadHistory(sel) {
    const key = sel.kind + ':' + sel.id;
    let params;
    if (sel.kind === 'edge') {
      const e = this.model.edges.get(sel.id);
      if (!e) return;
      params = { source: e.source, target: e.target, view: this.state.view };
    } else {
      params = { target: sel.id, view: this.state.view };
    }
    try {
      const data = await api.history({ ...params, window: '1h' });
      if (this.sel && this.sel.kind + ':' + this.sel.id === key) { this.history = { key, data }; this._render(); }
    } catch (err) {
      if (this.sel && this.sel.kind + ':' + this.sel.id === key) { this.history = { key, error: err.notAvailable ? 'history not available' : err.message }; this._render(); }
    }
  }

  _render() {
    const sel = this.sel;
    if (!sel) {
      render(this.el, h('div', { class: 'empty-state' },
        h('h3', {}, 'Nothing selected'),
        h('p', {}, 'Click a node or an edge to see its traffic, errors, latency, security and neighbours.'),
        h('p', { class: 'muted' }, 'Tip: press / to find a node, Esc to clear.')));
      return;
    }
    const d = sel.kind === 'node' ? this.model.nodes.get(sel.id) : this.model.edges.get(sel.id);
    if (!d) {
      render(this.el, h('div', { class: 'empty-state' }, h('h3', {}, 'Gone from the graph'), h('p', {}, 'This element has no traffic in the current window.')));
      return;
    }
    render(this.el, sel.kind === 'node' ? this._node(d) : this._edge(d));
  }

  _link(id) {
    const n = this.model.nodes.get(id);
    return h('button', { type: 'button', class: 'link', onclick: () => this.selectFn({ kind: 'node', id }) }, n ? (n.label || id) : id);
  }

  _node(d) {
    const th = this.state.thresholds;
    const health = nodeHealth(d, th);
    const { callers, callees } = this.model.neighbours(d.id);
    const ident = [['Namespace', d.namespace], ['Cluster', d.cluster], ['Workload', d.workload], ['App', d.app], ['Version', d.version], ['Service', d.service]]
      .filter(([, v]) => v);
    return [
      h('div', { class: 'panel-head' },
        h('span', { class: 'kind-badge' }, d.kind || 'node'),
        h('h2', { class: 'panel-title', title: d.label || d.id }, d.label || d.id),
        h('span', { class: 'health-pill ' + health }, health)),
      ident.length ? h('dl', { class: 'kv' }, ident.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])) : null,
      h('h3', {}, 'Inbound'), this._stats(d.inbound),
      h('h3', {}, 'Outbound'), this._stats(d.outbound),
      this._historyBlock(),
      h('h3', {}, 'Seen by'), this._signals(d.signals, d.inbound?.reporters ?? d.outbound?.reporters),
      h('h3', {}, `Callers (${callers.length})`), this._neighbourList(callers, 'source'),
      h('h3', {}, `Callees (${callees.length})`), this._neighbourList(callees, 'target'),
      this._anomalies(d.id),
    ];
  }

  _edge(d) {
    const th = this.state.thresholds;
    const health = healthOf(d.stats, th);
    const s = d.stats ?? {};
    return [
      h('div', { class: 'panel-head' },
        h('span', { class: 'kind-badge' }, (d.protocol || 'edge').toUpperCase()),
        h('h2', { class: 'panel-title' }, this._link(d.source), h('span', { class: 'arrow' }, ' → '), this._link(d.target)),
        h('span', { class: 'health-pill ' + health }, health)),
      h('h3', {}, 'Traffic (destination view)'), this._stats(s),
      d.sourceReported ? [h('h3', {}, 'As reported by the caller'), this._stats(d.sourceReported)] : null,
      this._historyBlock(),
      h('h3', {}, 'Security'),
      h('dl', { class: 'kv' },
        h('dt', {}, 'mTLS'), h('dd', {}, s.mtlsShare == null || s.mtlsShare < 0 ? 'unknown' : s.mtlsShare >= 0.999 ? 'all traffic' : fmtPct(s.mtlsShare) + ' of traffic'),
        h('dt', {}, 'Principals'), h('dd', {}, (d.principals ?? []).length ? h('ul', { class: 'plain' }, d.principals.map((p) => h('li', { class: 'mono' }, p))) : '–')),
      h('h3', {}, 'Seen by'), this._signals(d.signals, s.reporters),
      this._anomalies(d.id),
    ];
  }

  _stats(s) {
    if (!s || (!(s.requests > 0) && !(s.connOpened > 0) && !(s.rps > 0))) return h('p', { class: 'muted' }, 'No traffic in this window.');
    const rows = [];
    if (s.l4Only) {
      rows.push(['Connections', String(s.connOpened ?? 0)], ['Sent', fmtBytes(s.requestBytes)], ['Received', fmtBytes(s.responseBytes)]);
    } else {
      rows.push(['Rate', fmtRate(s.rps) + ' req/s'], ['Requests', String(s.requests ?? 0)],
        ['Errors', `${s.errors ?? 0} (${fmtPct(s.errorRatio)})`]);
    }
    const grid = h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const lat = s.l4Only ? null : h('div', { class: 'latency' },
      ['p50', 'p95', 'p99'].map((p) => h('div', { class: 'lat' }, h('span', { class: 'muted' }, p), h('strong', {}, fmtMs(s[p])))));
    const breakdown = [];
    const chips = (title, obj) => {
      const entries = Object.entries(obj ?? {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
      if (entries.length) breakdown.push(h('div', { class: 'chips' }, h('span', { class: 'muted' }, title), entries.map(([k, n]) => h('span', { class: 'chip' }, `${k} · ${n}`))));
    };
    chips('By class', s.errorsByClass);
    chips('Codes', s.codes);
    chips('Flags', s.flags);
    return [grid, lat, breakdown];
  }

  _historyBlock() {
    const hist = this.history;
    const title = h('h3', {}, 'Last hour');
    if (!hist) return [title, h('p', { class: 'muted' }, 'Loading…')];
    if (hist.error) return [title, h('p', { class: 'muted' }, hist.error)];
    const b = hist.data?.buckets ?? [];
    if (b.length < 2) return [title, h('p', { class: 'muted' }, 'Not enough history yet.')];
    const row = (label, key, fmt, cls) => {
      const vals = b.map((x) => (x ? x[key] : null));
      const last = [...vals].reverse().find((v) => Number.isFinite(v));
      return h('div', { class: 'spark-row' }, h('span', { class: 'muted' }, label), sparkline(vals, { cls }), h('span', { class: 'mono' }, fmt(last)));
    };
    return [title, h('div', { class: 'sparks' },
      row('Rate', 'rps', (v) => fmtRate(v) + '/s', 'spark-rate'),
      row('Errors', 'errorRatio', fmtPct, 'spark-err'),
      row('p50', 'p50', fmtMs, 'spark-lat'),
      row('p95', 'p95', fmtMs, 'spark-lat'),
      row('p99', 'p99', fmtMs, 'spark-lat'))];
  }

  _signals(signals, reporters) {
    const sig = (signals ?? []).map((s) => h('span', { class: 'chip sig' }, s));
    const rep = (reporters ?? []).map((r) => h('span', { class: 'chip' }, r));
    if (!sig.length && !rep.length) return h('p', { class: 'muted' }, '–');
    return h('div', { class: 'chips' }, sig, rep);
  }

  _neighbourList(edges, end) {
    if (!edges.length) return h('p', { class: 'muted' }, 'None in this window.');
    const th = this.state.thresholds;
    const sorted = [...edges].sort((a, b) => (b.stats?.rps ?? 0) - (a.stats?.rps ?? 0));
    return h('ul', { class: 'neigh' }, sorted.slice(0, 50).map((e) => {
      const other = e[end];
      const hl = healthOf(e.stats, th);
      return h('li', {},
        h('span', { class: 'dot ' + hl }),
        this._link(other),
        h('span', { class: 'mono muted right' }, `${fmtRate(e.stats?.rps)}/s · ${fmtPct(e.stats?.errorRatio)}`),
        h('button', { type: 'button', class: 'link small', title: 'Show edge', onclick: () => this.selectFn({ kind: 'edge', id: e.id }) }, 'edge'));
    }), sorted.length > 50 ? h('li', { class: 'muted' }, `… ${sorted.length - 50} more`) : null);
  }

  _anomalies(id) {
    const list = this.anomaliesFor(id);
    if (!list.length) return [h('h3', {}, 'Anomalies'), h('p', { class: 'muted' }, 'None open.')];
    return [h('h3', {}, `Anomalies (${list.length})`), h('ul', { class: 'plain' }, list.map((a) =>
      h('li', {}, h('span', { class: 'sev ' + (a.severity ?? 'info') }, a.severity ?? 'info'), ' ', a.title || a.summary || [a.type, a.metric, a.direction].filter(Boolean).join(' ') || a.kind || 'anomaly', ' ',
        h('span', { class: 'muted' }, (a.since ?? a.start) ? fmtAge(a.since ?? a.start) + ' ago' : ''))))];
  }
}
