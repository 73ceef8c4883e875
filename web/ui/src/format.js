// Number formatting shared by the graph labels and the side panel.

/** Requests per second, compact: 0, 0.05, 1.2, 35, 1.2k. */
export function fmtRate(rps) {
  if (rps == null || !Number.isFinite(rps)) return '–';
  if (rps === 0) return '0';
  if (rps < 0.01) return '<0.01';
  if (rps < 10) return trim(rps.toFixed(2));
  if (rps < 1000) return trim(rps.toFixed(1));
  if (rps < 1e6) return trim((rps / 1e3).toFixed(1)) + 'k';
  return trim((rps / 1e6).toFixed(1)) + 'M';
}

/** A ratio in [0,1] as a percentage with a precision that keeps 0.1% visible. */
export function fmtPct(ratio) {
  if (ratio == null || !Number.isFinite(ratio)) return '–';
  const p = ratio * 100;
  if (p === 0) return '0%';
  if (p < 0.01) return '<0.01%';
  // Two significant digits below 1%, so 0.098% is not shown as the 0.1% threshold.
  if (p < 1) return trim(p.toPrecision(2)) + '%';
  if (p < 10) return trim(p.toFixed(1)) + '%';
  return Math.round(p) + '%';
}

/** Milliseconds: 0.4ms, 12ms, 1.25s. */
export function fmtMs(ms) {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1) return trim(ms.toFixed(2)) + 'ms';
  if (ms < 1000) return (ms < 10 ? trim(ms.toFixed(1)) : Math.round(ms)) + 'ms';
  return trim((ms / 1000).toFixed(2)) + 's';
}

/** Bytes with binary units. */
export function fmtBytes(b) {
  if (b == null || !Number.isFinite(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? String(Math.round(b)) : trim(b.toFixed(1))) + ' ' + units[i];
}

/** Age of a timestamp relative to now: 12s, 5m, 3h, 2d. */
export function fmtAge(ts, now = Date.now()) {
  const t = typeof ts === 'number' ? ts : Date.parse(ts);
  if (!Number.isFinite(t)) return '–';
  let s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}

/** Clock time HH:MM:SS in the browser's zone. */
export function fmtClock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '–';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

function trim(s) {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/**
 * A readable name for a graph id when the element is not in the current graph:
 * node ids are "kind|cluster|namespace|workload|app|version|service", edge ids
 * "source>target>protocol".
 */
export function nameOfId(id) {
  const s = String(id ?? '');
  if (s.includes('>')) {
    const [a, b] = s.split('>');
    return `${nameOfId(a)} → ${nameOfId(b)}`;
  }
  const p = s.split('|');
  if (p.length < 4) return s;
  return p[3] || p[4] || p[6] || p.filter(Boolean).pop() || s;
}
