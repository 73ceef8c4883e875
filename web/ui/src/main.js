// meshlens dashboard: wires the model, the live feed, the canvas and the panels.
import './style.css';
import { GraphModel, edgeLabel, visibleSet } from './model.js';
import { healthOf, nodeHealth, DEFAULT_THRESHOLDS, parseThresholds } from './health.js';
import { LiveFeed, liveURL } from './live.js';
import { Topology, NODE_KINDS, defaultGroups } from './topology.js';
import { api, ApiError, setUnauthorizedHandler } from './api.js';
import { Session } from './session.js';
import { h, render } from './dom.js';
import { Details } from './details.js';
import { Anomalies } from './anomalies.js';
import { Changes } from './changes.js';
import { Chat } from './chat.js';
import { Proposals } from './proposals.js';
import { Replay } from './replay.js';

const $ = (id) => document.getElementById(id);

function stored(key, fallback) {
  try { const v = localStorage.getItem('meshlens.' + key); return v == null ? fallback : JSON.parse(v); } catch { return fallback; }
}
function store(key, value) {
  try { localStorage.setItem('meshlens.' + key, JSON.stringify(value)); } catch { /* storage disabled */ }
}

const state = {
  view: stored('view', 'workload'),
  namespaces: new Set(stored('namespaces', [])),
  window: stored('window', '5m'),
  labelMode: stored('labels', 'rps'),
  hideIdle: stored('hideIdle', false),
  search: '',
  thresholds: stored('thresholds', DEFAULT_THRESHOLDS),
  theme: stored('theme', window.matchMedia?.('(prefers-color-scheme: light)').matches ? 'light' : 'dark'),
  paused: false,
  replaying: false,
  liveState: 'connecting',
  selected: null,
};

// Exposed for the browser tests and the benchmark; read-only use.
const perf = { liveStates: [], snapshots: 0, deltas: 0, firstRenderMs: null, lastSyncMs: null, syncMs: [], updateMs: [], layouts: 0 };

const model = new GraphModel();
let topo;
let firstPending = null; // time the first snapshot arrived, until it is painted

export function toast(message, kind = 'error') {
  const t = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status' }, message);
  $('toasts').appendChild(t);
  setTimeout(() => t.remove(), 6000);
}

// The server calls every mesh member "workload"; the views draw them as Kiali does.
const VIEW_KIND = { app: 'app', versionedApp: 'version', service: 'service' };

function nodeData(d) {
  const kind = d.kind || 'unknown';
  return {
    id: d.id,
    label: d.label || d.workload || d.app || d.service || d.id,
    kind: kind === 'workload' ? VIEW_KIND[model.view] ?? kind : kind,
    health: nodeHealth(d, state.thresholds),
    gateway: d.kind === 'gateway',
  };
}

/** Boxes of a node: its namespace and, in the versioned-app view, its app (as Kiali draws it). */
function groupsOf(d) {
  const g = defaultGroups(d);
  if (model.view === 'versionedApp' && d.app && d.version && d.kind !== 'gateway') {
    g.push({ id: `app::${d.namespace ?? ''}::${d.app}`, label: d.app, parent: g[0]?.id, box: 'app' });
  }
  return g;
}

function edgeData(d) {
  return {
    id: d.id,
    health: healthOf(d.stats, state.thresholds),
    label: edgeLabel(d.stats, state.labelMode),
    protocol: d.protocol || 'http',
  };
}

/** Re-draws from the model. changed: Set of ids whose data changed, or undefined for all. */
function redraw(changed, { relayout = false } = {}) {
  const t0 = performance.now();
  const vis = visibleSet(model, { namespaces: state.namespaces, hideIdle: state.hideIdle, search: state.search },
    (e) => healthOf(e.stats, state.thresholds));
  const laidOut = topo.sync(model, vis, { changed, nodeData, edgeData, groupsOf, relayout, viewKey: model.view ?? '' });
  if (laidOut) perf.layouts++;
  topo.markMatches(vis.matches);
  if (state.selected) topo.select(state.selected.id);
  anomalies.reapplyHighlight();
  const ms = performance.now() - t0;
  perf.lastSyncMs = ms;
  perf.syncMs.push(ms);
  if (perf.syncMs.length > 200) perf.syncMs.shift();
  const empty = $('graph-empty');
  if (model.nodes.size === 0) {
    empty.hidden = false;
    render(empty, h('h2', {}, 'No traffic yet'), h('p', {}, 'The graph fills in as soon as meshlens sees calls in the selected window.'));
  } else if (vis.nodes.size === 0) {
    empty.hidden = false;
    render(empty, h('h2', {}, 'Nothing to show'), h('p', {}, 'No node matches the namespace filter or every edge is idle.'));
  } else empty.hidden = true;
  render($('graph-counts'), `${vis.nodes.size} nodes · ${vis.edges.size} edges`, model.end ? ` · ${new Date(model.end).toLocaleTimeString([], { hour12: false })}` : '');
  if (firstPending != null) {
    const start = firstPending;
    firstPending = null;
    // Painted after the next two frames: cytoscape draws in its own animation frame.
    requestAnimationFrame(() => requestAnimationFrame(() => { perf.firstPaintAt = performance.now(); perf.firstRenderMs = perf.firstPaintAt - start; }));
  }
  refreshNamespaceMenu();
  details.refresh();
}

function onSnapshot(graph, received = performance.now()) {
  if (graph.view && graph.view !== state.view) return; // an answer to an older subscription
  perf.snapshots++;
  if (perf.firstRenderMs == null && firstPending == null) firstPending = received;
  model.loadSnapshot(graph);
  redraw(undefined);
  const want = state.pendingSelect;
  if (want && (model.nodes.has(want.id) || model.edges.has(want.id))) { state.pendingSelect = null; select(want); }
}

function onLive(msg, received) {
  if (state.replaying) return; // the replay owns the model until "Live" is pressed
  switch (msg.type) {
    case 'snapshot':
      if (msg.graph) onSnapshot(msg.graph, received);
      break;
    case 'delta': {
      if (msg.view && msg.view !== state.view) return;
      perf.deltas++;
      const ch = model.applyDelta(msg);
      if (state.paused) return; // kept in the model; drawn on resume
      const changed = new Set([...ch.added.nodes, ...ch.added.edges, ...ch.updated.nodes, ...ch.updated.edges]);
      redraw(changed);
      // Message to canvas updated, JSON parsing included; the paint follows in the next frame.
      if (received != null) { perf.updateMs.push(performance.now() - received); if (perf.updateMs.length > 200) perf.updateMs.shift(); }
      break;
    }
    case 'anomaly':
    case 'incident':
      anomalies.push(msg);
      break;
    case 'error': {
      const text = msg.error ?? msg.message;
      toast(typeof text === 'string' ? `Live feed: ${text}` : 'Live feed error');
      break;
    }
    default:
      break;
  }
}

function setLiveState(s) {
  state.liveState = s;
  const btn = $('live-status');
  const shown = state.replaying ? 'replay' : s === 'live' && state.paused ? 'paused' : s;
  btn.dataset.state = shown;
  if (perf.liveStates.at(-1) !== shown) { perf.liveStates.push(shown); if (perf.liveStates.length > 50) perf.liveStates.shift(); }
  const text = { live: 'Live', paused: 'Paused', connecting: 'Connecting…', reconnecting: 'Reconnecting…', replay: 'Replay', idle: 'Offline' }[shown] ?? shown;
  btn.querySelector('.text').textContent = text;
  btn.title = shown === 'live' ? 'Live updates on: click to pause' : shown === 'paused' ? 'Paused: click to resume' : text;
}

const feed = new LiveFeed({
  url: liveURL(),
  onMessage: onLive,
  onState: (s) => setLiveState(s),
  subscription: () => ({ type: 'subscribe', view: state.view, namespaces: [...state.namespaces], window: state.window }),
});

/** Loads the current graph over HTTP: at start, after a filter change, when leaving replay. */
async function reload() {
  try {
    const g = await api.graph({ view: state.view, namespaces: [...state.namespaces], window: state.window });
    if (!state.replaying) onSnapshot(g);
  } catch (err) {
    toast(err instanceof ApiError ? `Graph: ${err.message}` : 'Graph: could not load');
  }
}

/**
 * The live feed answers a subscription with a snapshot; when it is down or
 * stays silent, the graph comes over HTTP instead, so one snapshot is loaded, not two.
 */
function expectSnapshot(waitMs) {
  const seen = perf.snapshots;
  setTimeout(() => { if (perf.snapshots === seen && !state.replaying) reload(); }, waitMs);
}

function settingsChanged() {
  store('view', state.view);
  store('namespaces', [...state.namespaces]);
  store('window', state.window);
  if (state.replaying) { replay.refresh(); return; }
  if (feed.state === 'live') { feed.resubscribe(); expectSnapshot(2000); } else reload();
}

function refreshNamespaceMenu() {
  const menu = $('ns-menu');
  const all = [...model.namespaces, ...state.namespaces].filter((v, i, a) => a.indexOf(v) === i).sort();
  const key = all.join('\n') + '|' + [...state.namespaces].sort().join(',');
  if (menu.dataset.key === key) return;
  menu.dataset.key = key;
  const items = all.map((ns) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: ns, checked: state.namespaces.has(ns), onchange: (ev) => {
      if (ev.target.checked) state.namespaces.add(ns); else state.namespaces.delete(ns);
      settingsChanged();
      redraw(undefined);
    } }), ns));
  render(menu, items.length ? items : h('p', { class: 'muted' }, 'No namespace seen yet'),
    h('button', { type: 'button', class: 'link', onclick: () => { state.namespaces.clear(); settingsChanged(); redraw(undefined); } }, 'All namespaces'));
  const n = state.namespaces.size;
  $('ns-button').textContent = n === 0 ? 'All namespaces' : n === 1 ? [...state.namespaces][0] : `${n} namespaces`;
}

/** Namespaces the server knows, beyond those of the current (possibly filtered) graph. */
async function loadNamespaces() {
  try {
    const r = await api.namespaces();
    for (const ns of r?.namespaces ?? []) if (ns) model.namespaces.add(ns);
    refreshNamespaceMenu();
  } catch { /* the graph's own namespaces are enough */ }
}

/** Shows a graph element, switching to the view its id belongs to when needed. */
function gotoElement(kind, id, view) {
  if (model.nodes.has(id) || model.edges.has(id)) { select({ kind, id }); return true; }
  if (view && view !== state.view && !state.replaying) {
    state.pendingSelect = { kind, id };
    state.view = view;
    $('view').value = view;
    select(null);
    settingsChanged();
    return true;
  }
  return false;
}

function select(sel) {
  state.selected = sel;
  topo.select(sel?.id);
  details.show(sel);
  if (sel) showTab('details');
}

function showTab(name) {
  document.querySelectorAll('.tabs [data-tab]').forEach((b) => {
    b.classList.toggle('active', b.dataset.tab === name);
    b.setAttribute('aria-selected', String(b.dataset.tab === name));
  });
  document.querySelectorAll('[data-panel]').forEach((p) => { p.hidden = p.dataset.panel !== name; });
  ({ anomalies, changes, chat, proposals })[name]?.activate?.();
}

function applyTheme() {
  document.documentElement.dataset.theme = state.theme;
  topo?.setTheme(state.theme);
  store('theme', state.theme);
}

function buildLegend() {
  const shapes = { workload: 'circle', app: 'square', version: 'circle', service: 'triangle', gateway: 'pentagon', database: 'barrel', external: 'diamond', unknown: 'dashed' };
  render($('legend'),
    h('div', { class: 'legend-title' }, 'Nodes'),
    NODE_KINDS.map((k) => h('div', { class: 'legend-row' }, h('span', { class: 'shape ' + shapes[k] }), k)),
    h('div', { class: 'legend-title' }, 'Edges'),
    ['healthy', 'degraded', 'failing', 'idle'].map((k) => h('div', { class: 'legend-row' }, h('span', { class: 'line ' + k }), k)),
  );
}

const details = new Details($('tab-details'), { model, state, select: (s) => select(s), anomaliesFor: (id) => anomalies.involving(id) });
const anomalies = new Anomalies($('tab-anomalies'), { model, state, highlight: (ids, roots) => topo.highlight(ids, roots), select: (s) => select(s), toast });
const changes = new Changes($('tab-changes'), { model, state, highlight: (ids) => topo.highlight(ids), toast });
const chat = new Chat($('tab-chat'), { model, state, goto: gotoElement, showTab, toast });
chat.onProposals = () => proposals.load();
chat.openAnomaly = (kind, id) => anomalies.open(kind, id);
const session = new Session({
  root: $('user'), button: $('user-btn'), menu: $('user-menu'), toast,
  // A new identity: the feed reconnects with the new cookie, panels reload.
  onChange: () => {
    feed.stop();
    if (session.mustSignIn) { session.required(); return; }
    startData();
    proposals.load();
  },
});
setUnauthorizedHandler(() => session.required());
const proposals = new Proposals($('tab-proposals'), { toast, session });
const replay = new Replay({
  slider: $('replay-slider'), play: $('replay-play'), speed: $('replay-speed'), time: $('replay-time'), live: $('replay-live'), msg: $('replay-msg'),
  state,
  load: (at) => api.graph({ view: state.view, namespaces: [...state.namespaces], window: state.window, at }),
  onFrame: (g) => onSnapshot(g),
  onEnter: () => { state.replaying = true; setLiveState(state.liveState); },
  onExit: () => { state.replaying = false; setLiveState(state.liveState); reload(); },
});

function init() {
  applyTheme();
  topo = new Topology($('cy'), { theme: state.theme, onSelect: (sel) => select(sel) });
  buildLegend();
  $('view').value = state.view;
  $('window').value = state.window;
  $('labels').value = state.labelMode;
  $('hide-idle').checked = state.hideIdle;
  $('view').addEventListener('change', (ev) => { state.view = ev.target.value; select(null); settingsChanged(); });
  $('window').addEventListener('change', (ev) => { state.window = ev.target.value; settingsChanged(); });
  $('labels').addEventListener('change', (ev) => { state.labelMode = ev.target.value; store('labels', state.labelMode); redraw(undefined); });
  $('hide-idle').addEventListener('change', (ev) => { state.hideIdle = ev.target.checked; store('hideIdle', state.hideIdle); redraw(undefined); });
  let searchTimer;
  $('search').addEventListener('input', (ev) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.search = ev.target.value; redraw(new Set()); }, 120);
  });
  $('search').addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    const vis = visibleSet(model, { namespaces: state.namespaces, search: ev.target.value });
    const first = [...vis.matches][0];
    if (first) { select({ kind: 'node', id: first }); topo.cy.animate({ center: { eles: topo.cy.getElementById(first) }, duration: 250 }); }
  });
  $('ns-button').addEventListener('click', () => {
    const m = $('ns-menu');
    if (m.hidden) loadNamespaces();
    m.hidden = !m.hidden;
    $('ns-button').setAttribute('aria-expanded', String(!m.hidden));
  });
  document.addEventListener('click', (ev) => { if (!$('ns-filter').contains(ev.target)) $('ns-menu').hidden = true; });
  $('live-status').addEventListener('click', () => {
    if (state.replaying) { replay.exit(); return; }
    state.paused = !state.paused;
    setLiveState(state.liveState);
    if (!state.paused) redraw(undefined); // catch up with what arrived while paused
  });
  $('theme-btn').addEventListener('click', () => { state.theme = state.theme === 'dark' ? 'light' : 'dark'; applyTheme(); });
  $('fit-btn').addEventListener('click', () => topo.fit());
  $('layout-btn').addEventListener('click', () => { topo.positions.clear(); redraw(new Set(), { relayout: true }); });
  $('settings-btn').addEventListener('click', () => {
    const s = $('settings');
    s.hidden = !s.hidden;
    $('th-degraded').value = +(state.thresholds.degraded * 100).toFixed(3);
    $('th-failing').value = +(state.thresholds.failing * 100).toFixed(3);
    $('th-error').hidden = true;
  });
  const applyTh = (th) => { state.thresholds = th; store('thresholds', th); $('settings').hidden = true; redraw(undefined); };
  $('th-apply').addEventListener('click', () => {
    const r = parseThresholds($('th-degraded').value, $('th-failing').value);
    if (r.error) { $('th-error').hidden = false; $('th-error').textContent = r.error; return; }
    applyTh(r.value);
  });
  $('th-reset').addEventListener('click', () => applyTh({ ...DEFAULT_THRESHOLDS }));
  document.querySelectorAll('.tabs [data-tab]').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab)));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { select(null); anomalies.clearSelection(); }
    if (ev.key === '/' && document.activeElement?.tagName !== 'INPUT' && document.activeElement?.tagName !== 'TEXTAREA') { ev.preventDefault(); $('search').focus(); }
  });
  details.show(null);
  window.__meshlens = {
    model, state, perf, anomalies, get cy() { return topo.cy; }, get topo() { return topo; },
    center: (id) => topo.renderedCenter(id),
    select: (id) => select(model.edges.has(id) ? { kind: 'edge', id } : { kind: 'node', id }),
  };
  // Who is this first: on a server with auth on, every data request would
  // be refused (and the feed retried forever) until someone signs in.
  session.load().then(() => {
    if (session.mustSignIn) { setLiveState('idle'); session.required(); } else startData();
  });
}

/** Starts the live feed and loads what the panels show: at start and after a sign-in. */
function startData() {
  feed.start();
  expectSnapshot(1500);
  anomalies.load();
  loadNamespaces();
}

init();
