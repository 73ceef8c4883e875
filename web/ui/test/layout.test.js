import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layeredLayout } from '../src/layout.js';

test('callers are left of callees, namespaces do not overlap', () => {
  const nodes = [
    { id: 'gw', group: 'istio-system' },
    { id: 'pp', group: 'bookinfo' }, { id: 'rv', group: 'bookinfo' }, { id: 'rt', group: 'bookinfo' }, { id: 'dt', group: 'bookinfo' },
    { id: 'ext', group: '' },
  ];
  const edges = [
    { source: 'gw', target: 'pp' }, { source: 'pp', target: 'rv' }, { source: 'rv', target: 'rt' }, { source: 'pp', target: 'dt' },
    { source: 'pp', target: 'ext' }, { source: 'x', target: 'pp' }, // unknown end: ignored
  ];
  const pos = layeredLayout(nodes, edges);
  assert.equal(pos.size, nodes.length);
  assert.ok(pos.get('pp').x < pos.get('rv').x && pos.get('rv').x < pos.get('rt').x);
  assert.equal(pos.get('rv').x, pos.get('dt').x, 'same rank, same column');
  assert.notEqual(pos.get('rv').y, pos.get('dt').y);
  // Blocks: the bounding boxes of two namespaces are disjoint.
  const box = (ids) => ids.map((i) => pos.get(i)).reduce((b, p) => ({ x1: Math.min(b.x1, p.x), x2: Math.max(b.x2, p.x), y1: Math.min(b.y1, p.y), y2: Math.max(b.y2, p.y) }), { x1: Infinity, x2: -Infinity, y1: Infinity, y2: -Infinity });
  const a = box(['pp', 'rv', 'rt', 'dt']), b = box(['gw']);
  assert.ok(a.x2 < b.x1 || b.x2 < a.x1 || a.y2 < b.y1 || b.y2 < a.y1, 'namespace blocks overlap');
});

test('cycles do not hang and every node gets a distinct position', () => {
  const nodes = [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'self' }];
  const edges = [{ source: 'a', target: 'b' }, { source: 'b', target: 'c' }, { source: 'c', target: 'a' }, { source: 'self', target: 'self' }];
  const pos = layeredLayout(nodes, edges);
  const keys = new Set([...pos.values()].map((p) => `${p.x},${p.y}`));
  assert.equal(keys.size, 4);
});

test('two calls give the same result (stable layout)', () => {
  const nodes = Array.from({ length: 50 }, (_, i) => ({ id: 'n' + i, group: 'ns' + (i % 3) }));
  const edges = Array.from({ length: 120 }, (_, i) => ({ source: 'n' + (i % 50), target: 'n' + ((i * 7 + 3) % 50) }));
  assert.deepEqual([...layeredLayout(nodes, edges)], [...layeredLayout(nodes, edges)]);
});
