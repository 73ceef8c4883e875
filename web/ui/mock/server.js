// Mock meshlens API for front-end development, the mock browser tests and the
// benchmark. Serves dist/ and the API shapes of the real server.
//
//   node mock/server.js [--port 0] [--large N,M] [--delta-ms 2000] [--missing anomalies,chat,...] [--xss] [--fault]
//
// Prints "listening on http://127.0.0.1:PORT" once ready. Test hooks:
//   POST /__mock/drop   closes every websocket (the client must reconnect)
//   POST /__mock/fault  turns the ratings fault on (anomaly + incident events)
//   POST /__mock/tick   sends a delta now
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { acceptUpgrade } from './ws.js';
import { bookinfo, synthetic, delta, history } from './data.js';

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    large: { type: 'string', default: '' },
    'delta-ms': { type: 'string', default: '2000' },
    missing: { type: 'string', default: '' },
    xss: { type: 'boolean', default: false },
    fault: { type: 'boolean', default: false },
    'update-share': { type: 'string', default: '1' },
  },
});

const dist = path.resolve(import.meta.dirname, '..', 'dist');
const missing = new Set(opt.missing.split(',').filter(Boolean));
const [largeN, largeM] = opt.large ? opt.large.split(',').map(Number) : [0, 0];
let tick = 0;
let fault = opt.fault;
const clients = new Set();
const proposals = [{
  id: 'p-1', kind: 'DestinationRule', title: 'Outlier detection for ratings', state: 'pending', createdAt: new Date(Date.now() - 120000).toISOString(),
  rationale: 'ratings returns 503 to 35% of calls; ejecting failing pods limits the damage while the cause is fixed.',
  yaml: 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: ratings\n  namespace: bookinfo\nspec:\n  host: ratings\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: 5\n      interval: 10s\n      baseEjectionTime: 30s\n',
  diff: '--- a/ratings\n+++ b/ratings\n+  trafficPolicy:\n+    outlierDetection:\n+      consecutive5xxErrors: 5\n',
}];

function graphFor(view, t = tick) {
  if (largeN) {
    const g = synthetic({ n: largeN, m: largeM, tick: t, view });
    return g;
  }
  return bookinfo({ view, tick: t, fault, xss: opt.xss });
}

function anomalyItems() {
  if (!fault) return { anomalies: [], incidents: [] };
  const edge = 'workload|bookinfo|reviews-v2>workload|bookinfo|ratings-v1';
  const since = new Date(Date.now() - 90000).toISOString();
  const a = { id: 'a-1', kind: 'error-rate', severity: 'critical', state: 'open', since, edge, node: 'workload|bookinfo|ratings-v1', score: 0.97, explanation: 'errors 35% vs baseline 0.05%' };
  const inc = { id: 'i-1', kind: 'incident', title: 'ratings failing', severity: 'critical', state: 'open', since, nodes: ['workload|bookinfo|ratings-v1'], edges: [edge, 'workload|bookinfo|reviews-v3>workload|bookinfo|ratings-v1'], score: 0.97,
    explanation: 'Calls to ratings fail with 503 (UF) from both callers.', rootCauses: [{ service: 'ratings', score: 0.82, explanation: 'both callers see 503s; ratings is the common callee' }, { service: 'reviews', score: 0.12, explanation: 'caller of ratings' }] };
  return { anomalies: [a], incidents: [inc] };
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => { try { resolve(b ? JSON.parse(b) : {}); } catch { resolve({}); } });
  });
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const feature = p.split('/')[3];
  if (p.startsWith('/api/') && missing.has(feature)) return json(res, 404, { error: `${feature} is not enabled` });
  if (p === '/api/v1/graph/diff') return json(res, 404, { error: 'not here' }); // exercise the client-side diff
  if (p === '/api/v1/graph') {
    if (url.searchParams.get('at') && Date.parse(url.searchParams.get('at')) < Date.now() - 3700e3) return json(res, 400, { error: 'at: before the oldest stored bucket' });
    return json(res, 200, graphFor(url.searchParams.get('view') ?? 'workload', url.searchParams.get('at') ? Math.floor(Date.parse(url.searchParams.get('at')) / 30000) : tick));
  }
  if (p === '/api/v1/namespaces') {
    const g = graphFor('workload');
    return json(res, 200, { namespaces: [...new Set(g.elements.nodes.map((n) => n.data.namespace).filter(Boolean))].sort() });
  }
  if (p === '/api/v1/history') return json(res, 200, history({ fault }));
  if (p === '/api/v1/anomalies') return json(res, 200, anomalyItems().anomalies);
  if (p === '/api/v1/incidents') return json(res, 200, { items: anomalyItems().incidents });
  if (p === '/api/v1/chat' && req.method === 'POST') {
    const body = await readBody(req);
    if (!body.message) return json(res, 400, { error: 'message: required' });
    const answer = fault ? 'ratings is failing: 35% of its calls return 503 (UF), seen by reviews-v2 and reviews-v3.' : 'No service is failing right now; all edges are below 0.1% errors.';
    return json(res, 200, { answer, links: fault ? [{ kind: 'node', id: 'workload|bookinfo|ratings-v1' }, { kind: 'incident', id: 'i-1' }] : [] });
  }
  if (p === '/api/v1/proposals') return json(res, 200, proposals);
  const m = p.match(/^\/api\/v1\/proposals\/([^/]+)\/(approve|reject)$/);
  if (m && req.method === 'POST') {
    if (req.headers.authorization !== 'Bearer approver') return json(res, 403, { error: 'approving needs the approver role' });
    const pr = proposals.find((x) => x.id === decodeURIComponent(m[1]));
    if (!pr) return json(res, 404, { error: 'no such proposal' });
    pr.state = m[2] === 'approve' ? 'approved' : 'rejected';
    return json(res, 200, pr);
  }
  if (p === '/__mock/drop') { for (const c of clients) c.conn.drop(); clients.clear(); return json(res, 200, {}); }
  if (p === '/__mock/fault') {
    fault = true;
    const { anomalies, incidents } = anomalyItems();
    for (const c of clients) { c.conn.send({ type: 'anomaly', anomaly: anomalies[0] }); c.conn.send({ type: 'incident', incident: incidents[0] }); }
    pushDelta();
    return json(res, 200, {});
  }
  if (p === '/__mock/tick') { pushDelta(); return json(res, 200, {}); }
  if (p.startsWith('/api/')) return json(res, 404, { error: 'no such endpoint' });
  // Static files from dist/, index.html for anything else.
  let file = path.join(dist, path.normalize(p).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, 'index.html');
  if (!fs.existsSync(file)) { res.writeHead(503); return res.end('run npm run build first'); }
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});

const last = new Map(); // client -> last graph sent

function pushDelta() {
  tick++;
  for (const c of clients) {
    const next = graphFor(c.view);
    const prev = last.get(c) ?? next;
    const share = Number(opt['update-share']);
    const d = delta(prev, next);
    if (share < 1) d.updated.edges = d.updated.edges.filter((_, i) => i % Math.round(1 / share) === 0);
    last.set(c, next);
    c.conn.send(d);
  }
}

server.on('upgrade', (req, socket) => {
  if (!req.url.startsWith('/api/v1/live') || missing.has('live')) { socket.destroy(); return; }
  const c = { view: 'workload', conn: null };
  c.conn = acceptUpgrade(req, socket, (msg) => {
    if (msg.type !== 'subscribe') return;
    c.view = msg.view ?? 'workload';
    const g = graphFor(c.view);
    last.set(c, g);
    c.conn.send({ type: 'snapshot', graph: g });
  });
  if (!c.conn) return;
  clients.add(c);
  socket.on('close', () => { clients.delete(c); last.delete(c); });
});

const deltaMs = Number(opt['delta-ms']);
if (deltaMs > 0) setInterval(pushDelta, deltaMs).unref();

server.listen(Number(opt.port), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
