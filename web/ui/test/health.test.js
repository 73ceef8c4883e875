import { test } from 'node:test';
import assert from 'node:assert/strict';
import { healthOf, nodeHealth, parseThresholds, DEFAULT_THRESHOLDS } from '../src/health.js';
import { backoffDelay } from '../src/backoff.js';

test('healthOf uses Kiali thresholds: >= 0.1% degraded, >= 10% failing', () => {
  const cases = [
    ['no stats', null, 'idle'],
    ['no requests', { requests: 0, rps: 0, errorRatio: 0 }, 'idle'],
    ['tcp only with connections', { requests: 0, connOpened: 12, l4Only: true }, 'healthy'],
    ['clean', { requests: 1000, errorRatio: 0 }, 'healthy'],
    ['just under degraded', { requests: 100000, errorRatio: 0.00099 }, 'healthy'],
    ['exactly 0.1%', { requests: 1000, errorRatio: 0.001 }, 'degraded'],
    ['just under failing', { requests: 1000, errorRatio: 0.0999 }, 'degraded'],
    ['exactly 10%', { requests: 1000, errorRatio: 0.1 }, 'failing'],
    ['ratio missing: computed from errors', { requests: 200, errors: 40 }, 'failing'],
  ];
  for (const [name, s, want] of cases) assert.equal(healthOf(s), want, name);
});

test('healthOf with configured thresholds', () => {
  const th = { degraded: 0.05, failing: 0.5 };
  assert.equal(healthOf({ requests: 100, errorRatio: 0.01 }, th), 'healthy');
  assert.equal(healthOf({ requests: 100, errorRatio: 0.2 }, th), 'degraded');
  assert.equal(healthOf({ requests: 100, errorRatio: 0.5 }, th), 'failing');
});

test('nodeHealth: inbound first, callers-only nodes are healthy when they send', () => {
  assert.equal(nodeHealth({ inbound: { requests: 10, errorRatio: 0.3 } }), 'failing');
  assert.equal(nodeHealth({ inbound: null, outbound: { requests: 10, errorRatio: 0.3 } }), 'healthy');
  assert.equal(nodeHealth({}), 'idle');
});

test('parseThresholds', () => {
  assert.deepEqual(parseThresholds('0.1', '10').value, DEFAULT_THRESHOLDS);
  assert.match(parseThresholds('10', '5').error, /below/);
  assert.match(parseThresholds('-1', '5').error, /between/);
  assert.match(parseThresholds('abc', '5').error, /between/);
});

test('backoffDelay grows exponentially with jitter and a cap', () => {
  const lo = { random: () => 0 }, hi = { random: () => 1 };
  assert.equal(backoffDelay(0, lo), 250);
  assert.equal(backoffDelay(0, hi), 500);
  assert.equal(backoffDelay(3, hi), 4000);
  assert.equal(backoffDelay(10, hi), 15000);
  assert.equal(backoffDelay(50, lo), 7500);
});
