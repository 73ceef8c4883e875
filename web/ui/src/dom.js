// A tiny element builder. Text always goes through textContent, so names that
// contain markup or script are shown as text, never interpreted.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replaces the content of el. */
export function render(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';

/** A small line chart of values (nulls leave gaps). */
export function sparkline(values, { width = 120, height = 28, cls = '' } = {}) {
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'spark ' + cls);
  svg.setAttribute('preserveAspectRatio', 'none');
  const nums = values.filter((v) => Number.isFinite(v));
  if (nums.length < 2) return svg;
  const max = Math.max(...nums), min = Math.min(0, ...nums);
  const span = max - min || 1;
  const step = width / Math.max(1, values.length - 1);
  let d = '', pen = false;
  values.forEach((v, i) => {
    if (!Number.isFinite(v)) { pen = false; return; }
    const x = (i * step).toFixed(1), y = (height - 2 - ((v - min) / span) * (height - 4)).toFixed(1);
    d += (pen ? 'L' : 'M') + x + ' ' + y;
    pen = true;
  });
  const path = document.createElementNS(SVGNS, 'path');
  path.setAttribute('d', d);
  svg.appendChild(path);
  return svg;
}
