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
import crypto from 'node:crypto';
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
// Tokens and roles as auth/ has them: a token is exchanged for a session cookie.
const TOKENS = { 'approver-token': { name: 'alice', role: 'approver' }, 'viewer-token': { name: 'ci-bot', role: 'viewer' } };
const sessions = new Map();

function principal(req) {
  const m = /(?:^|;\s*)meshlens_session=([^;]+)/.exec(req.headers.cookie ?? '');
  return m ? sessions.get(m[1]) ?? null : null;
}

const proposals = [{
  id: 'p-1', title: 'Outlier detection for ratings', status: 'pending', createdAt: new Date(Date.now() - 120000).toISOString(),
  expiresAt: new Date(Date.now() + 3600e3).toISOString(), createdBy: 'assistant:builtin', evidence: ['ratings: 35% of requests fail with 503 (UF)'],
  rationale: 'ratings returns 503 to 35% of calls; ejecting failing pods limits the damage while the cause is fixed.',
  yaml: 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: ratings\n  namespace: bookinfo\nspec:\n  host: ratings\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: 5\n      interval: 10s\n      baseEjectionTime: 30s\n',
  diff: '--- a/ratings\n+++ b/ratings\n+  trafficPolicy:\n+    outlierDetection:\n+      consecutive5xxErrors: 5\n',
}];
for (const p of proposals) p.sha256 = crypto.createHash('sha256').update(p.yaml).digest('hex');

function graphFor(view, t = tick) {
  if (largeN) {
    const g = synthetic({ n: largeN, m: largeM, tick: t, view });
    return g;
  }
  return bookinfo({ view, tick: t, fault, xss: opt.xss });
}

// In detect's shapes (detect/types.go): subjects and root causes are NodeRefs.
function anomalyItems() {
  if (!fault) return { anomalies: [], incidents: [] };
  const ref = (w, app) => ({ id: `workload|bookinfo|${w}`, name: w, kind: 'workload', namespace: 'bookinfo', workload: w, app });
  const since = new Date(Date.now() - 90000).toISOString();
  const a = { id: 'an-1', type: 'error_rate', metric: 'errors.5xx', direction: 'up', state: 'firing', severity: 'critical', since,
    subject: { kind: 'edge', source: ref('reviews-v2', 'reviews'), target: ref('ratings-v1', 'ratings'), protocol: 'http' },
    observed: 0.35, baseline: 0.0005, unit: 'ratio', score: 42, summary: 'errors 35% vs baseline 0.05% on reviews-v2 -> ratings-v1', incidentId: 'in-1' };
  const inc = { id: 'in-1', state: 'firing', severity: 'critical', start: since, title: 'ratings failing', anomalies: ['an-1'],
    nodes: [ref('reviews-v2', 'reviews'), ref('reviews-v3', 'reviews'), ref('ratings-v1', 'ratings')],
    rootCauses: [{ node: ref('ratings-v1', 'ratings'), score: 0.82, explained: false, explanation: 'both callers see 503s; ratings is the common callee', anomalies: ['an-1'] },
      { node: ref('reviews-v2', 'reviews'), score: 0.12, explained: true, explanation: 'its errors are explained by ratings', anomalies: [] }] };
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
  if (p === '/api/v1/anomalies') return json(res, 200, { anomalies: anomalyItems().anomalies });
  if (p === '/api/v1/incidents') return json(res, 200, { incidents: anomalyItems().incidents });
  if (p === '/api/v1/suspects') {
    return json(res, 200, { at: new Date().toISOString(), window: '10m0s', suspects: anomalyItems().incidents.flatMap((inc) => inc.rootCauses) });
  }
  if (req.method === 'POST' && p.startsWith('/api/') && !req.headers['x-meshlens-csrf']) return json(res, 403, { error: 'missing X-Meshlens-Csrf header' });
  if (p === '/api/v1/login' && req.method === 'POST') {
    const body = await readBody(req);
    const who = TOKENS[body.token];
    if (!who) return json(res, 401, { error: 'authentication required' });
    const sid = crypto.randomBytes(12).toString('hex');
    sessions.set(sid, who);
    res.setHeader('Set-Cookie', `meshlens_session=${sid}; Path=/; HttpOnly; SameSite=Strict`);
    return json(res, 200, { name: who.name, role: who.role });
  }
  if (p === '/api/v1/logout' && req.method === 'POST') {
    res.setHeader('Set-Cookie', 'meshlens_session=; Path=/; HttpOnly; Max-Age=0');
    return json(res, 200, {});
  }
  if (p === '/api/v1/whoami') {
    const who = principal(req);
    return json(res, 200, who ? { ...who, method: 'session', authEnabled: true } : { name: 'anonymous', role: 'none', method: 'none', authEnabled: true });
  }
  if (p === '/api/v1/chat' && req.method === 'POST') {
    const body = await readBody(req);
    if (!body.message) return json(res, 400, { error: 'message: required' });
    const answer = fault ? 'ratings is failing: 35% of its calls return 503 (UF), seen by reviews-v2 and reviews-v3.' : 'No service is failing right now; all edges are below 0.1% errors.';
    return json(res, 200, { sessionId: body.sessionId, answer, engine: 'builtin', links: fault ? [{ kind: 'node', id: 'workload|bookinfo|ratings-v1', label: 'ratings-v1', view: 'workload' }, { kind: 'incident', id: 'in-1' }] : [], toolCalls: [], proposals: [] });
  }
  if (p === '/api/v1/proposals') return json(res, 200, { proposals });
  const m = p.match(/^\/api\/v1\/proposals\/([^/]+)\/(approve|reject)$/);
  if (m && req.method === 'POST') {
    const who = principal(req);
    if (!who) return json(res, 401, { error: 'authentication required' });
    if (who.role !== 'approver') return json(res, 403, { error: `POST ${p} needs role approver; ${who.name} has ${who.role}` });
    const pr = proposals.find((x) => x.id === decodeURIComponent(m[1]));
    if (!pr) return json(res, 404, { error: 'no such proposal' });
    const body = await readBody(req);
    if (m[2] === 'approve' && body.sha256 !== pr.sha256) return json(res, 409, { error: 'sha256 does not match the proposal YAML' });
    pr.status = m[2] === 'approve' ? 'approved' : 'rejected';
    pr.decidedBy = who.name;
    return json(res, 200, pr);
  }
  if (p === '/__mock/drop') { for (const c of clients) c.conn.drop(); clients.clear(); return json(res, 200, {}); }
  if (p === '/__mock/fault') {
    fault = true;
    const { anomalies, incidents } = anomalyItems();
    for (const c of clients) {
      c.conn.send({ type: 'anomaly', payload: { action: 'fired', anomaly: anomalies[0] } });
      c.conn.send({ type: 'incident', payload: { action: 'fired', incident: incidents[0] } });
    }
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
