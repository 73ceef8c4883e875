import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fmtRate, fmtPct, fmtMs, fmtBytes, fmtAge, nameOfId } from '../src/format.js';

test('fmtRate', () => {
  const cases = [[0, '0'], [0.004, '<0.01'], [0.05, '0.05'], [1.2, '1.2'], [13.66, '13.7'], [999.94, '999.9'], [1234, '1.2k'], [2.5e6, '2.5M'], [null, '–'], [NaN, '–']];
  for (const [v, want] of cases) assert.equal(fmtRate(v), want, `fmtRate(${v})`);
});

test('fmtPct keeps the 0.1% threshold visible', () => {
  const cases = [[0, '0%'], [0.00005, '<0.01%'], [0.001, '0.1%'], [0.00098, '0.098%'], [0.0015, '0.15%'], [0.0123, '1.2%'], [0.35, '35%'], [1, '100%'], [undefined, '–']];
  for (const [v, want] of cases) assert.equal(fmtPct(v), want, `fmtPct(${v})`);
});

test('fmtMs', () => {
  const cases = [[0.42, '0.42ms'], [3.25, '3.3ms'], [12.4, '12ms'], [999, '999ms'], [1250, '1.25s'], [-1, '–'], [null, '–']];
  for (const [v, want] of cases) assert.equal(fmtMs(v), want, `fmtMs(${v})`);
});

test('fmtBytes', () => {
  assert.equal(fmtBytes(512), '512 B');
  assert.equal(fmtBytes(1536), '1.5 KiB');
  assert.equal(fmtBytes(5 * 1024 * 1024), '5 MiB');
});

test('fmtAge', () => {
  const now = Date.parse('2026-11-23T12:00:00Z');
  const cases = [['2026-11-23T11:59:50Z', '10s'], ['2026-11-23T11:55:00Z', '5m'], ['2026-11-23T09:00:00Z', '3h'], ['2026-11-21T12:00:00Z', '2d'], ['2026-11-23T12:00:10Z', '0s'], ['garbage', '–']];
  for (const [ts, want] of cases) assert.equal(fmtAge(ts, now), want, ts);
});

test('nameOfId reads the server\'s node and edge ids', () => {
  const cases = [
    ['workload|Kubernetes|default|details-v1|details|v1|', 'details-v1'],
    ['workload|Kubernetes|default||details||', 'details'],
    ['workload|Kubernetes|default||||ratings.default.svc.cluster.local', 'ratings.default.svc.cluster.local'],
    ['gateway|Kubernetes|istio-system|istio-ingressgateway|istio-ingressgateway|latest|>workload|Kubernetes|default|productpage-v1|productpage|v1|>http', 'istio-ingressgateway → productpage-v1'],
    ['plain', 'plain'],
    [undefined, ''],
  ];
  for (const [id, want] of cases) assert.equal(nameOfId(id), want, String(id));
});
