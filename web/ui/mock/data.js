// Graph data for the mock API: bookinfo (as in the demo) or a large synthetic
// mesh for the benchmark, in the shapes of the meshlens API.

function stats(rps, errorRatio, p50, { mtls = 1, l4 = false, window = 300 } = {}) {
  const requests = l4 ? 0 : Math.round(rps * window);
  const errors = Math.round(requests * errorRatio);
  const codes = errors ? { 503: Math.ceil(errors * 0.7), 500: errors - Math.ceil(errors * 0.7) } : {};
  return {
    requests, rps: l4 ? 0 : rps, errors, errorRatio: requests ? errors / requests : 0,
    errorsByClass: errors ? { '5xx': errors } : {}, codes, flags: errors ? { UF: Math.ceil(errors * 0.3), URX: Math.floor(errors * 0.1) } : {},
    p50, p95: p50 * 2.6, p99: p50 * 4.1, mean: p50 * 1.3, mtlsShare: mtls,
    requestBytes: Math.round(rps * window * 420), responseBytes: Math.round(rps * window * 2300),
    connOpened: l4 ? Math.round(rps * window) || 12 : 0, l4Only: l4, reporters: ['destination', 'source'],
  };
}

function sum(list) {
  if (!list.length) return null;
  const s = stats(0, 0, 0);
  let lat = 0;
  for (const x of list) {
    s.requests += x.requests; s.rps += x.rps; s.errors += x.errors;
    lat = Math.max(lat, x.p50);
  }
  s.errorRatio = s.requests ? s.errors / s.requests : 0;
  s.p50 = lat; s.p95 = lat * 2.6; s.p99 = lat * 4.1;
  s.errorsByClass = s.errors ? { '5xx': s.errors } : {};
  return s;
}

const WORKLOADS = [
  { ns: 'istio-system', workload: 'istio-ingressgateway', app: 'istio-ingressgateway', version: 'latest', kind: 'gateway' },
  { ns: 'bookinfo', workload: 'productpage-v1', app: 'productpage', version: 'v1' },
  { ns: 'bookinfo', workload: 'details-v1', app: 'details', version: 'v1' },
  { ns: 'bookinfo', workload: 'reviews-v1', app: 'reviews', version: 'v1' },
  { ns: 'bookinfo', workload: 'reviews-v2', app: 'reviews', version: 'v2' },
  { ns: 'bookinfo', workload: 'reviews-v3', app: 'reviews', version: 'v3' },
  { ns: 'bookinfo', workload: 'ratings-v1', app: 'ratings', version: 'v1' },
  { ns: 'bookinfo', workload: 'mongodb', app: 'mongodb', version: '', kind: 'database' },
  { ns: '', workload: 'api.payments.example.com', app: 'api.payments.example.com', version: '', kind: 'external' },
];

const CALLS = [
  ['istio-ingressgateway', 'productpage-v1', 40, 0, 12],
  ['productpage-v1', 'details-v1', 40, 0, 3],
  ['productpage-v1', 'reviews-v1', 13, 0, 8],
  ['productpage-v1', 'reviews-v2', 13, 0, 22],
  ['productpage-v1', 'reviews-v3', 14, 0, 25],
  ['reviews-v2', 'ratings-v1', 13, 0, 4],
  ['reviews-v3', 'ratings-v1', 14, 0, 4],
  ['ratings-v1', 'mongodb', 27, 0, 1, 'tcp'],
  ['productpage-v1', 'api.payments.example.com', 2, 0, 90],
];

function project(w, view) {
  const ns = w.ns;
  const kind = w.kind ?? (view === 'app' ? 'app' : view === 'versionedApp' ? 'version' : view === 'service' ? 'service' : 'workload');
  if (w.kind === 'external' || w.kind === 'database') return { id: `${w.kind}|${w.workload}`, label: w.workload, kind: w.kind, namespace: ns, workload: w.workload };
  switch (view) {
    case 'app': return { id: `app|${ns}|${w.app}`, label: w.app, kind, namespace: ns, app: w.app };
    case 'versionedApp': return { id: `version|${ns}|${w.app}|${w.version}`, label: `${w.app} ${w.version}`, kind, namespace: ns, app: w.app, version: w.version };
    case 'service': return { id: `service|${ns}|${w.app}`, label: w.app, kind, namespace: ns, service: w.app };
    default: return { id: `workload|${ns}|${w.workload}`, label: w.workload, kind, namespace: ns, workload: w.workload, app: w.app, version: w.version };
  }
}

/** bookinfo in a view; tick varies the numbers; fault makes ratings fail; xss adds a hostile name. */
export function bookinfo({ view = 'workload', tick = 0, fault = false, xss = false, window = 300 } = {}) {
  const byName = new Map(WORKLOADS.map((w) => [w.workload, w]));
  const nodes = new Map(), edges = new Map();
  const wl = [...WORKLOADS];
  const calls = [...CALLS];
  if (xss) {
    const evil = '<img src=x onerror="window.__xss=1">';
    wl.push({ ns: 'bookinfo', workload: evil, app: evil, version: 'v1' });
    byName.set(evil, wl[wl.length - 1]);
    calls.push(['productpage-v1', evil, 1, 0, 5]);
  }
  for (const w of wl) {
    const p = project(w, view);
    nodes.set(p.id, { ...p, cluster: 'Kubernetes', signals: ['metrics', 'traces'], inboundList: [], outboundList: [] });
  }
  const wobble = (x, i) => x * (1 + 0.08 * Math.sin(tick / 2 + i));
  calls.forEach(([s, t, rps, err, p50, proto], i) => {
    const S = project(byName.get(s), view), T = project(byName.get(t), view);
    const failing = fault && t === 'ratings-v1';
    const st = stats(wobble(rps, i), failing ? 0.35 : err, failing ? p50 * 6 : wobble(p50, i + 3), { l4: proto === 'tcp', window, mtls: t.includes('.') ? -1 : 1 });
    const id = `${S.id}>${T.id}`;
    const prev = edges.get(id);
    const merged = prev ? sum([prev.stats, st]) : st;
    edges.set(id, {
      id, source: S.id, target: T.id, protocol: proto ?? 'http', signals: ['metrics', 'traces'],
      principals: t.includes('.') ? [] : [`spiffe://cluster.local/ns/${byName.get(s).ns}/sa/${s.replace(/-v\d$/, '')}`],
      stats: merged, sourceReported: merged,
    });
    nodes.get(S.id).outboundList.push(st);
    nodes.get(T.id).inboundList.push(st);
  });
  return finish(view, nodes, edges);
}

function finish(view, nodes, edges) {
  const now = new Date();
  const out = {
    timestamp: now.toISOString(), start: new Date(now - 300000).toISOString(), end: now.toISOString(), view,
    elements: {
      nodes: [...nodes.values()].map(({ inboundList, outboundList, ...d }) => ({ data: { ...d, inbound: sum(inboundList ?? []), outbound: sum(outboundList ?? []) } })),
      edges: [...edges.values()].map((d) => ({ data: d })),
    },
  };
  return out;
}

/** A synthetic mesh of n nodes and m edges in k namespaces, layered so that it looks like a call graph. */
export function synthetic({ n = 1000, m = 5000, k = 10, tick = 0, seed = 42, view = 'workload' } = {}) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const nodes = new Map(), edges = new Map();
  const layers = 8;
  const ids = [];
  for (let i = 0; i < n; i++) {
    const ns = `team-${i % k}`;
    const id = `workload|${ns}|svc-${i}`;
    ids.push(id);
    nodes.set(id, { id, label: `svc-${i}`, kind: i % 97 === 0 ? 'database' : 'workload', namespace: ns, workload: `svc-${i}`, app: `svc-${i}`, version: 'v1', signals: ['metrics'], inboundList: [], outboundList: [] });
  }
  const layerOf = (i) => Math.floor((i / n) * layers);
  let guard = 0;
  while (edges.size < m && guard++ < m * 20) {
    const a = Math.floor(rnd() * n), b = Math.floor(rnd() * n);
    if (layerOf(a) >= layerOf(b)) continue;
    const id = `${ids[a]}>${ids[b]}`;
    if (edges.has(id)) continue;
    const bad = rnd() < 0.02;
    const st = stats(1 + rnd() * 50 * (1 + 0.1 * Math.sin(tick + a)), bad ? 0.2 : rnd() < 0.05 ? 0.005 : 0, 2 + rnd() * 40);
    edges.set(id, { id, source: ids[a], target: ids[b], protocol: 'http', signals: ['metrics'], principals: [], stats: st, sourceReported: null });
    nodes.get(ids[a]).outboundList.push(st);
    nodes.get(ids[b]).inboundList.push(st);
  }
  return finish(view, nodes, edges);
}

/** The delta between two graph responses, as the live feed sends it. */
export function delta(prev, next) {
  const idx = (g, k) => new Map(g.elements[k].map((x) => [x.data.id, x]));
  const d = { type: 'delta', end: next.end, view: next.view, added: { nodes: [], edges: [] }, updated: { nodes: [], edges: [] }, removed: { nodes: [], edges: [] } };
  for (const k of ['nodes', 'edges']) {
    const a = idx(prev, k), b = idx(next, k);
    for (const [id, x] of b) {
      if (!a.has(id)) d.added[k].push(x);
      else if (JSON.stringify(a.get(id)) !== JSON.stringify(x)) d.updated[k].push(x);
    }
    for (const id of a.keys()) if (!b.has(id)) d.removed[k].push(id);
  }
  return d;
}

export function history({ buckets = 120, fault = false } = {}) {
  const out = [];
  for (let i = 0; i < buckets; i++) {
    const late = fault && i > buckets - 10;
    out.push({ rps: 12 + 3 * Math.sin(i / 8), errorRatio: late ? 0.3 : 0.0005 * (1 + Math.sin(i)), p50: late ? 30 : 5 + Math.sin(i / 5), p95: late ? 80 : 14 + 2 * Math.sin(i / 5), p99: late ? 150 : 25 + 4 * Math.sin(i / 4) });
  }
  return { start: new Date(Date.now() - buckets * 30000).toISOString(), resolution: '30s', buckets: out };
}
