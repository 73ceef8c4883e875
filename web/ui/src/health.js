// Health classification of edges and nodes, with Kiali's default thresholds:
// a share of failed requests of at least 0.1% is degraded, at least 10% failing.

export const DEFAULT_THRESHOLDS = Object.freeze({ degraded: 0.001, failing: 0.1 });

/** Health of a STATS object: idle (no traffic), healthy, degraded or failing. */
export function healthOf(stats, th = DEFAULT_THRESHOLDS) {
  if (!stats) return 'idle';
  const req = stats.requests ?? 0;
  const conns = stats.connOpened ?? 0;
  if (req === 0 && conns === 0 && !(stats.rps > 0)) return 'idle';
  const ratio = Number.isFinite(stats.errorRatio) ? stats.errorRatio
    : (req > 0 ? (stats.errors ?? 0) / req : 0);
  if (ratio >= th.failing) return 'failing';
  if (ratio >= th.degraded) return 'degraded';
  return 'healthy';
}

/** Health of a node: from the traffic it received, else from what it sent. */
export function nodeHealth(data, th = DEFAULT_THRESHOLDS) {
  const inH = healthOf(data.inbound, th);
  if (inH !== 'idle') return inH;
  return healthOf(data.outbound, th) === 'idle' ? 'idle' : 'healthy';
}

/** Validates user-entered thresholds (percentages) and returns ratios or an error. */
export function parseThresholds(degradedPct, failingPct) {
  const d = Number(degradedPct), f = Number(failingPct);
  if (!Number.isFinite(d) || !Number.isFinite(f) || d < 0 || f < 0 || d > 100 || f > 100) {
    return { error: 'thresholds must be percentages between 0 and 100' };
  }
  if (d >= f) return { error: 'the degraded threshold must be below the failing one' };
  return { value: { degraded: d / 100, failing: f / 100 } };
}
