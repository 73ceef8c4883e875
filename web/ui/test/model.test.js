import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { GraphModel, edgeLabel, visibleSet, diffGraphs, mtlsLabel } from '../src/model.js';
import { healthOf } from '../src/health.js';
import { involvedIds, rootCauseNodes } from '../src/anomalies.js';
import { normaliseServerDiff } from '../src/changes.js';

const bookinfo = JSON.parse(fs.readFileSync(new URL('./testdata/bookinfo-fault.json', import.meta.url)));
const RATINGS = 'workload|bookinfo|ratings-v1';
const R2R = 'workload|bookinfo|reviews-v2>workload|bookinfo|ratings-v1';

test('loadSnapshot indexes nodes, edges and namespaces', () => {
  const m = new GraphModel();
  const ch = m.loadSnapshot(bookinfo);
  assert.equal(m.nodes.size, 9);
  assert.equal(m.edges.size, 9);
  assert.equal(ch.added.nodes.length, 9);
  assert.deepEqual([...m.namespaces].sort(), ['bookinfo', 'istio-system']);
  assert.equal(m.view, 'workload');
  const again = m.loadSnapshot(bookinfo);
  assert.equal(again.added.nodes.length, 0);
  assert.equal(again.updated.edges.length, 9);
});

test('applyDelta adds, updates and removes, and drops edges of removed nodes', () => {
  const m = new GraphModel();
  m.loadSnapshot(bookinfo);
  const ch = m.applyDelta({
    end: '2026-11-23T15:00:00Z',
    added: { nodes: [{ data: { id: 'workload|bookinfo|reviews-v4', label: 'reviews-v4', namespace: 'bookinfo', kind: 'workload' } }],
      edges: [{ data: { id: 'e-new', source: 'workload|bookinfo|productpage-v1', target: 'workload|bookinfo|reviews-v4', stats: { requests: 3 } } },
        { data: { id: 'dangling', source: 'nope', target: RATINGS } }] },
    updated: { nodes: [], edges: [{ data: { id: R2R, stats: { requests: 10, errorRatio: 0 } } }] },
    removed: { nodes: [RATINGS], edges: [] },
  });
  assert.deepEqual(ch.added.nodes, ['workload|bookinfo|reviews-v4']);
  assert.deepEqual(ch.added.edges, ['e-new']);
  assert.ok(!m.edges.has('dangling'), 'an edge to an unknown node is skipped');
  assert.ok(!m.nodes.has(RATINGS));
  // Removals run first, so both edges into ratings went, and the later update of one of them is dropped.
  assert.ok(ch.removed.edges.includes('workload|bookinfo|reviews-v3>workload|bookinfo|ratings-v1'));
  assert.ok(!m.edges.has(R2R), 'an edge to a removed node is skipped on update');
  assert.equal(m.end, '2026-11-23T15:00:00Z');
});

test('applyDelta update merges with the previous data', () => {
  const m = new GraphModel();
  m.loadSnapshot(bookinfo);
  m.applyDelta({ updated: { edges: [{ data: { id: R2R, source: 'workload|bookinfo|reviews-v2', target: RATINGS, stats: { requests: 10, errorRatio: 0 } } }] } });
  const e = m.edges.get(R2R);
  assert.equal(e.stats.requests, 10);
  assert.equal(e.protocol, 'http', 'fields absent from the update are kept');
});

test('edgeLabel per mode', () => {
  const s = { requests: 100, rps: 13.4, errorRatio: 0.35, p50: 24, p95: 62.4, p99: 98, mtlsShare: 1 };
  const cases = [['none', ''], ['rps', '13.4 rps'], ['errors', '35%'], ['p50', '24ms'], ['p95', '62ms'], ['p99', '98ms'], ['mtls', 'mTLS']];
  for (const [mode, want] of cases) assert.equal(edgeLabel(s, mode), want, mode);
  assert.equal(edgeLabel({ requests: 0, l4Only: true, rps: 0 }, 'rps'), '');
  assert.equal(mtlsLabel(-1), '');
  assert.equal(mtlsLabel(0.5), 'mTLS 50%');
  assert.equal(mtlsLabel(0), '');
});

test('visibleSet: namespace filter keeps edges with one end inside, hide idle, search', () => {
  const m = new GraphModel();
  m.loadSnapshot(bookinfo);
  const all = visibleSet(m);
  assert.equal(all.nodes.size, 9);
  const ns = visibleSet(m, { namespaces: new Set(['istio-system']) });
  assert.deepEqual([...ns.nodes].sort(), ['workload|bookinfo|productpage-v1', 'workload|istio-system|istio-ingressgateway']);
  m.applyDelta({ added: { nodes: [{ data: { id: 'lonely', label: 'lonely', namespace: 'bookinfo' } }] } });
  assert.ok(visibleSet(m).nodes.has('lonely'));
  assert.ok(!visibleSet(m, { hideIdle: true }, (e) => healthOf(e.stats)).nodes.has('lonely'));
  const found = visibleSet(m, { search: 'REVIEWS' });
  assert.equal(found.matches.size, 3);
});

test('diffGraphs finds added, removed, failing and slower edges', () => {
  const before = structuredClone(bookinfo);
  const after = structuredClone(bookinfo);
  for (const e of before.elements.edges) if (e.data.target === RATINGS) { e.data.stats.errorRatio = 0; e.data.stats.p95 = 10; }
  after.elements.edges = after.elements.edges.filter((e) => !e.data.target.includes('details'));
  after.elements.edges.push({ data: { id: 'new-edge', source: 'a', target: 'b', stats: {} } });
  const det = after.elements.edges.find((e) => e.data.target.includes('reviews-v1'));
  det.data.stats.p95 *= 3;
  const changes = diffGraphs(before, after);
  const by = (c) => changes.filter((x) => x.change === c).map((x) => x.id).sort();
  assert.deepEqual(by('added'), ['new-edge']);
  assert.deepEqual(by('removed'), ['workload|bookinfo|productpage-v1>workload|bookinfo|details-v1']);
  assert.deepEqual(by('errors up'), ['workload|bookinfo|reviews-v2>workload|bookinfo|ratings-v1', 'workload|bookinfo|reviews-v3>workload|bookinfo|ratings-v1']);
  assert.deepEqual(by('slower'), ['workload|bookinfo|productpage-v1>workload|bookinfo|reviews-v1']);
  assert.equal(diffGraphs(bookinfo, bookinfo).length, 0);
});

test('involvedIds accepts the field names anomalies and incidents use', () => {
  assert.deepEqual(involvedIds({ node: 'a', edge: 'b' }).sort(), ['a', 'b']);
  assert.deepEqual(involvedIds({ nodes: ['a'], edges: ['b', 'c'], anomalies: [{ edgeId: 'd' }] }).sort(), ['a', 'b', 'c', 'd']);
  assert.deepEqual(involvedIds({}), []);
});

test('rootCauseNodes maps a service name to graph nodes', () => {
  const m = new GraphModel();
  m.loadSnapshot(bookinfo);
  assert.deepEqual(rootCauseNodes(m, { service: 'ratings' }), [RATINGS]);
  assert.deepEqual(rootCauseNodes(m, { service: 'ratings.bookinfo' }), [RATINGS]);
  assert.deepEqual(rootCauseNodes(m, { service: 'ratings.other-ns' }), []);
  assert.deepEqual(rootCauseNodes(m, { node: RATINGS }), [RATINGS]);
  assert.equal(rootCauseNodes(m, { service: 'reviews' }).length, 3);
});

test('normaliseServerDiff accepts grouped and flat shapes', () => {
  const grouped = normaliseServerDiff({ added: { nodes: ['n1'], edges: [{ data: { id: 'e1', source: 'a', target: 'b' } }] }, removed: { edges: ['e2'] }, changed: [{ id: 'e3', change: 'errors up' }] });
  assert.deepEqual(grouped.map((x) => [x.id, x.kind, x.change]), [['n1', 'node', 'added'], ['e1', 'edge', 'added'], ['e2', 'edge', 'removed'], ['e3', 'edge', 'errors up']]);
  const flat = normaliseServerDiff({ changes: [{ id: 'x', kind: 'node', change: 'removed' }] });
  assert.deepEqual(flat.map((x) => [x.id, x.kind, x.change]), [['x', 'node', 'removed']]);
});

// A response of the real server (meshlens serve --demo, bookinfo, workload view).
test('a real graph response loads and maps root causes to its ids', () => {
  const demo = JSON.parse(fs.readFileSync(new URL('./testdata/demo-workload.json', import.meta.url)));
  const m = new GraphModel();
  m.loadSnapshot(demo);
  assert.equal(m.nodes.size, demo.elements.nodes.length);
  assert.equal(m.edges.size, demo.elements.edges.length);
  const ratings = rootCauseNodes(m, { service: 'ratings' });
  assert.equal(ratings.length, 1);
  assert.equal(m.nodes.get(ratings[0]).label, 'ratings-v1');
  for (const e of m.edges.values()) {
    assert.ok(m.nodes.has(e.source) && m.nodes.has(e.target), e.id);
    assert.notEqual(edgeLabel(e.stats, 'rps'), '', `no rate label for ${e.id}`);
  }
  const vis = visibleSet(m, { namespaces: new Set(['default']) });
  assert.ok(vis.nodes.size >= 5, 'bookinfo is in the default namespace');
});

// Shapes of detect's API (detect/types.go): subject NodeRefs, incidents with
// member anomaly ids and rootCauses[].node.
test('detect anomalies and incidents map onto the graph of any view', () => {
  const demo = JSON.parse(fs.readFileSync(new URL('./testdata/demo-workload.json', import.meta.url)));
  const m = new GraphModel();
  m.loadSnapshot(demo);
  const ref = (w, app, v) => ({ id: `workload|Kubernetes|default|${w}|${app}|${v}|`, name: w, kind: 'workload', namespace: 'default', workload: w, app, version: v });
  const R2 = ref('reviews-v2', 'reviews', 'v2'), RT = ref('ratings-v1', 'ratings', 'v1');
  const edgeId = `${R2.id}>${RT.id}>http`;
  const anomaly = { id: 'an-1', type: 'error_rate', metric: 'errors.5xx', direction: 'up', subject: { kind: 'edge', source: R2, target: RT, protocol: 'http' }, state: 'firing', severity: 'critical' };
  assert.deepEqual(involvedIds(anomaly, m).sort(), [edgeId, R2.id, RT.id].sort());
  const incident = { id: 'in-1', anomalies: ['an-1'], nodes: [RT], rootCauses: [{ node: RT, score: 0.9 }] };
  assert.deepEqual(involvedIds(incident, m, new Map([['an-1', anomaly]])).sort(), [edgeId, R2.id, RT.id].sort());
  assert.deepEqual(rootCauseNodes(m, incident.rootCauses[0]), [RT.id]);

  // The same incident seen from the app graph: ids differ, names match.
  const app = new GraphModel();
  app.loadSnapshot({ view: 'app', elements: {
    nodes: [{ data: { id: 'workload|Kubernetes|default||reviews||', label: 'reviews', namespace: 'default', app: 'reviews' } },
      { data: { id: 'workload|Kubernetes|default||ratings||', label: 'ratings', namespace: 'default', app: 'ratings' } }],
    edges: [{ data: { id: 'workload|Kubernetes|default||reviews||>workload|Kubernetes|default||ratings||>http', source: 'workload|Kubernetes|default||reviews||', target: 'workload|Kubernetes|default||ratings||' } }] } });
  assert.deepEqual(rootCauseNodes(app, incident.rootCauses[0]), ['workload|Kubernetes|default||ratings||']);
  assert.ok(involvedIds(anomaly, app).includes('workload|Kubernetes|default||reviews||>workload|Kubernetes|default||ratings||>http'));
  // A different namespace does not match.
  assert.deepEqual(rootCauseNodes(app, { node: { ...RT, id: 'x', namespace: 'other' } }), []);
});

test('normaliseServerDiff reads meshlens diff responses', () => {
  const items = normaliseServerDiff({
    view: 'workload',
    nodes: { added: [{ id: 'n-new', label: 'reviews-v4' }], removed: [] },
    edges: { added: [{ id: 'e-new', source: 'a', target: 'n-new' }], removed: [{ id: 'e-old', source: 'a', target: 'b' }] },
    changes: {
      rate: [{ id: 'e1', source: 'a', target: 'b', before: 10, after: 2 }],
      errorRatio: [{ id: 'e2', source: 'a', target: 'c', before: 0, after: 0.2 }],
      p95: [{ id: 'e1', source: 'a', target: 'b', before: 20, after: 900 }],
    },
  });
  const by = Object.fromEntries(items.map((i) => [i.id + ':' + i.change, i]));
  assert.equal(by['n-new:added'].label, 'reviews-v4');
  assert.ok(by['e-new:added'] && by['e-old:removed']);
  assert.equal(by['e1:slower'].after.stats.p95, 900);
  assert.equal(by['e2:errors up'].after.stats.errorRatio, 0.2);
  assert.equal(items.filter((i) => i.id === 'e1').length, 1, 'an edge is listed once, under its most telling change');
});
