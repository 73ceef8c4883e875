// Reconnect delays for the live feed: exponential from base to max, with
// jitter so that many dashboards do not reconnect in lockstep after a restart.
export function backoffDelay(attempt, { base = 500, max = 15000, random = Math.random } = {}) {
  const exp = Math.min(max, base * 2 ** Math.max(0, attempt));
  // Jitter in [50%, 100%] of the exponential delay.
  return Math.round(exp / 2 + random() * exp / 2);
}
