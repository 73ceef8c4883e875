// The topology canvas: cytoscape with a layered (dagre) layout, namespaces as
// compound boxes, and incremental updates that keep node positions, so the
// picture does not jump each time a bucket closes.
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';
import { layeredLayout } from './layout.js';

cytoscape.use(dagre);

const PALETTE = {
  dark: {
    bg: '#14171c', text: '#d7dce3', textBg: '#14171c', node: '#232932', nodeBorder: '#6b7686',
    nsFill: '#1b2028', nsBorder: '#3a4350', nsText: '#8c97a6',
    healthy: '#4caf50', degraded: '#f0ab00', failing: '#e5484d', idle: '#5a6472',
    select: '#4c9aff', match: '#c77dff', hl: '#ffd166',
  },
  light: {
    bg: '#f5f6f8', text: '#1f2933', textBg: '#f5f6f8', node: '#ffffff', nodeBorder: '#7c8794',
    nsFill: '#eceef2', nsBorder: '#b9c0ca', nsText: '#5c6773',
    healthy: '#3e8635', degraded: '#d08c00', failing: '#c9190b', idle: '#a4acb6',
    select: '#0066cc', match: '#8a3ffc', hl: '#e0a800',
  },
};

// Shapes follow Kiali's conventions where it has one.
const SHAPES = {
  workload: 'ellipse', version: 'ellipse', app: 'round-rectangle', service: 'round-triangle',
  unknown: 'ellipse', external: 'diamond', database: 'barrel', gateway: 'round-pentagon',
  queue: 'rhomboid', waypoint: 'round-octagon', namespace: 'round-rectangle',
};

export const NODE_KINDS = ['workload', 'app', 'version', 'service', 'gateway', 'database', 'external', 'unknown'];

function styles(theme, large) {
  const p = PALETTE[theme];
  const s = [
    { selector: 'node', style: {
      'background-color': p.node, 'border-width': 2, 'border-color': p.nodeBorder,
      width: 30, height: 30, shape: (n) => SHAPES[n.data('kind')] ?? 'ellipse',
      label: 'data(label)', color: p.text, 'font-size': 11, 'font-family': 'Inter, system-ui, sans-serif',
      'text-valign': 'bottom', 'text-halign': 'center', 'text-margin-y': 5,
      'text-background-color': p.textBg, 'text-background-opacity': 0.8, 'text-background-padding': 2,
      'text-background-shape': 'round-rectangle', 'text-max-width': 140, 'text-wrap': 'ellipsis',
      'min-zoomed-font-size': large ? 9 : 4,
    } },
    { selector: 'node[kind="service"]', style: { width: 32, height: 28 } },
    { selector: 'node[kind="app"]', style: { width: 34, height: 30 } },
    { selector: 'node[kind="unknown"]', style: { 'border-style': 'dashed', 'background-color': p.bg } },
    { selector: 'node[kind="external"]', style: { 'border-style': 'dotted' } },
    { selector: 'node[health="healthy"]', style: { 'border-color': p.healthy } },
    { selector: 'node[health="degraded"]', style: { 'border-color': p.degraded, 'border-width': 3 } },
    { selector: 'node[health="failing"]', style: { 'border-color': p.failing, 'border-width': 4 } },
    { selector: 'node[health="idle"]', style: { 'border-color': p.idle } },
    { selector: 'node[?gateway]', style: { 'background-color': theme === 'dark' ? '#2d3a4f' : '#e7f1fa' } },
    { selector: ':parent', style: {
      shape: 'round-rectangle', 'background-color': p.nsFill, 'background-opacity': 0.55,
      'border-width': 1, 'border-style': 'dashed', 'border-color': p.nsBorder,
      label: 'data(label)', color: p.nsText, 'font-size': 12, 'font-weight': 600,
      'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -4, 'text-background-opacity': 0,
      padding: 18,
    } },
    { selector: 'node[box="app"]', style: {
      'border-style': 'solid', 'background-opacity': 0.35, 'font-size': 11, 'font-weight': 500, padding: 10,
      'text-valign': 'bottom', 'text-margin-y': 4,
    } },
    { selector: 'edge', style: {
      width: 1.6, 'line-color': p.healthy, 'target-arrow-color': p.healthy, 'target-arrow-shape': 'triangle',
      'arrow-scale': 0.9, 'curve-style': 'bezier',
      label: 'data(label)', 'font-size': 9, color: p.text, 'text-rotation': 'none',
      'text-background-color': p.textBg, 'text-background-opacity': 0.85, 'text-background-padding': 1,
      'min-zoomed-font-size': 5, 'font-family': 'Inter, system-ui, sans-serif',
    } },
    // On large graphs edge labels cost more than the lines: they show only on
    // the selected edge and around the selected or highlighted part.
    ...(large ? [
      { selector: 'edge', style: { label: '', 'curve-style': 'haystack', 'haystack-radius': 0, 'target-arrow-shape': 'none', 'mid-target-arrow-shape': 'triangle', 'mid-target-arrow-color': p.healthy } },
      { selector: 'edge:selected, edge.hl, edge.nbr', style: { label: 'data(label)', 'min-zoomed-font-size': 0 } },
      { selector: 'node', style: { 'text-background-opacity': 0, 'text-wrap': 'none' } },
    ] : []),
    { selector: 'edge[protocol="tcp"]', style: { 'line-style': 'solid', 'target-arrow-shape': 'triangle-backcurve' } },
    { selector: 'edge[health="degraded"]', style: { 'line-color': p.degraded, 'target-arrow-color': p.degraded, 'mid-target-arrow-color': p.degraded, width: 2.2 } },
    { selector: 'edge[health="failing"]', style: { 'line-color': p.failing, 'target-arrow-color': p.failing, 'mid-target-arrow-color': p.failing, width: 2.8 } },
    { selector: 'edge[health="idle"]', style: { 'line-color': p.idle, 'target-arrow-color': p.idle, 'mid-target-arrow-color': p.idle, 'line-style': 'dashed', width: 1.2 } },
    { selector: 'node:selected', style: { 'border-color': p.select, 'border-width': 4, 'overlay-opacity': 0 } },
    { selector: 'edge:selected', style: { 'line-color': p.select, 'target-arrow-color': p.select, width: 3.5 } },
    { selector: '.match', style: { 'border-color': p.match, 'border-width': 5 } },
    { selector: 'node.hl', style: { 'border-color': p.hl, 'border-width': 5, 'overlay-color': p.hl, 'overlay-opacity': 0.15, 'overlay-padding': 6 } },
    { selector: 'edge.hl', style: { 'line-color': p.hl, 'target-arrow-color': p.hl, width: 4 } },
    { selector: 'node.rootcause', style: { 'border-color': p.failing, 'border-width': 6, 'overlay-color': p.failing, 'overlay-opacity': 0.2, 'overlay-padding': 8 } },
    { selector: '.faded', style: { opacity: 0.18 } },
    { selector: ':parent.faded', style: { opacity: 0.4 } },
  ];
  return s;
}

const LARGE = 400;

/** The boxes a node is drawn in, outermost first: its namespace. */
export function defaultGroups(d) {
  return d.namespace ? [{ id: 'ns::' + d.namespace, label: d.namespace }] : [];
}

function ensureGroups(cy, chain) {
  for (const g of chain) {
    if (cy.getElementById(g.id).nonempty()) continue;
    cy.add({ group: 'nodes', data: { id: g.id, label: g.label, ns: true, box: g.box ?? 'namespace', parent: g.parent } });
  }
}

// Sets only the fields that differ: each data change makes cytoscape restyle
// and redraw the element, the costliest part of an update on a large graph.
function setData(el, d) {
  const cur = el.data();
  let diff = null;
  for (const k in d) if (cur[k] !== d[k]) (diff ??= {})[k] = d[k];
  if (diff) el.data(diff);
} // nodes above which the cheaper rendering settings apply

export class Topology {
  constructor(container, { theme = 'dark', onSelect } = {}) {
    this.theme = theme;
    this.large = false;
    // id -> {x, y} per view: survives filtering and switching views back and
    // forth; the same id (a database, say) sits elsewhere in another view.
    this.posByView = new Map([['', new Map()]]);
    this.viewKey = '';
    this.positions = this.posByView.get('');
    this.cy = cytoscape({
      container,
      style: styles(theme, false),
      wheelSensitivity: 0.25,
      minZoom: 0.05,
      hideEdgesOnViewport: false,
      maxZoom: 4,
      boxSelectionEnabled: false,
      textureOnViewport: false,
    });
    this.cy.on('tap', 'node, edge', (ev) => {
      const el = ev.target;
      if (el.isParent()) return;
      onSelect?.({ kind: el.isNode() ? 'node' : 'edge', id: el.id() });
    });
    this.cy.on('tap', (ev) => { if (ev.target === this.cy) onSelect?.(null); });
    this.cy.on('free', 'node', (ev) => this._remember(ev.target));
  }

  setTheme(theme) {
    this.theme = theme;
    this.cy.style(styles(theme, this.large));
  }

  _remember(n) {
    if (n.isParent()) { n.descendants().forEach((c) => this.positions.set(c.id(), { ...c.position() })); return; }
    this.positions.set(n.id(), { ...n.position() });
  }

  /**
   * Makes the canvas show `visible` (ids) of model. changed: ids whose data changed
   * (undefined: all). nodeData/edgeData map model data to canvas data.
   * Returns true when a full layout ran.
   */
  sync(model, visible, { changed, nodeData, edgeData, groupsOf = defaultGroups, relayout = false, viewKey = '' }) {
    const cy = this.cy;
    if (viewKey !== this.viewKey) {
      // Another view: keep this one's picture for later and start from that one's.
      cy.nodes().not(':parent').forEach((n) => { if (!n.data('ns')) this.positions.set(n.id(), { ...n.position() }); });
      cy.elements().remove();
      this.viewKey = viewKey;
      if (!this.posByView.has(viewKey)) this.posByView.set(viewKey, new Map());
      this.positions = this.posByView.get(viewKey);
    }
    const t0 = performance.now();
    let added = 0, fresh = 0;
    const large = visible.nodes.size > LARGE || visible.edges.size > LARGE * 4;
    if (large !== this.large) { this.large = large; cy.style(styles(this.theme, large)); }
    cy.batch(() => {
      // Removals first, so no edge points at a node that is gone.
      cy.edges().forEach((e) => { if (!visible.edges.has(e.id())) cy.remove(e); });
      cy.nodes().forEach((n) => {
        if (n.isParent() || n.data('ns')) return;
        if (!visible.nodes.has(n.id())) { this._remember(n); cy.remove(n); }
      });
      const toAdd = [];
      const groups = new Map(); // id -> {id, label, parent}, outermost first
      for (const id of visible.nodes) {
        const d = model.nodes.get(id);
        const chain = groupsOf(d);
        for (const g of chain) if (!groups.has(g.id)) groups.set(g.id, g);
        const parent = chain.length ? chain[chain.length - 1].id : undefined;
        const el = cy.getElementById(id);
        if (el.nonempty()) {
          if (!changed || changed.has(id)) setData(el, nodeData(d));
          if ((el.data('parent') ?? undefined) !== parent) { ensureGroups(cy, chain); el.move({ parent: parent ?? null }); }
          continue;
        }
        const pos = this.positions.get(id);
        if (!pos) fresh++;
        toAdd.push({ group: 'nodes', data: { ...nodeData(d), parent }, position: pos ? { ...pos } : undefined });
      }
      ensureGroups(cy, [...groups.values()]);
      if (toAdd.length) cy.add(toAdd);
      added = toAdd.length;
      const edges = [];
      for (const id of visible.edges) {
        const d = model.edges.get(id);
        const el = cy.getElementById(id);
        if (el.nonempty()) { if (!changed || changed.has(id)) setData(el, edgeData(d)); continue; }
        edges.push({ group: 'edges', data: { ...edgeData(d), source: d.source, target: d.target } });
      }
      if (edges.length) cy.add(edges);
      // Innermost boxes first: an app box that goes may leave its namespace empty.
      for (let i = 0; i < 2; i++) cy.nodes('[?ns]').forEach((p) => { if (p.children().empty()) cy.remove(p); });
    });
    performance.measure('meshlens:sync', { start: t0 });
    const total = cy.nodes().not(':parent').length;
    // A full layout only when most of the picture is new; otherwise new nodes
    // are put next to a neighbour and everything else stays where it was.
    if (relayout || (fresh > 0 && fresh >= total * 0.3)) {
      this.layout();
      return true;
    }
    if (fresh > 0) this._placeNew();
    // Coming back to a view seen before: positions are known, but the viewport
    // still frames the other view.
    if (added > 0 && added >= total * 0.3) this.fit();
    return false;
  }

  // New nodes go into the column of their siblings (other callees of the same
  // caller, or other callers of the same callee), below them, on a free spot;
  // nothing already drawn moves.
  _placeNew() {
    const cy = this.cy;
    const leaves = cy.nodes().not(':parent').filter((n) => !n.data('ns'));
    const known = (m) => this.positions.has(m.id());
    const taken = leaves.filter(known).map((m) => m.position());
    const free = (x, y) => taken.every((p) => Math.abs(p.x - x) > 60 || Math.abs(p.y - y) > 55);
    const bb = leaves.filter(known).boundingBox();
    let slot = 0;
    leaves.forEach((n) => {
      if (known(n)) return;
      let x, y;
      const callers = n.incomers('node').filter(known), callees = n.outgoers('node').filter(known);
      const anchor = callers.nonempty() ? callers[0] : callees.nonempty() ? callees[0] : null;
      if (anchor) {
        const dir = callers.nonempty() ? 1 : -1;
        const sibs = (dir > 0 ? anchor.outgoers('node') : anchor.incomers('node')).filter((m) => m !== n && known(m));
        if (sibs.nonempty()) {
          x = sibs[0].position('x');
          y = Math.max(...sibs.map((m) => m.position('y'))) + 70;
        } else {
          x = anchor.position('x') + dir * 180;
          y = anchor.position('y');
        }
      } else {
        x = (Number.isFinite(bb.x2) ? bb.x2 : 0) + 160;
        y = (Number.isFinite(bb.y1) ? bb.y1 : 0) + 70 * slot++;
      }
      for (let i = 0; i < 200 && !free(x, y); i++) y += 70;
      const pos = { x, y };
      n.position(pos);
      taken.push(pos);
      this.positions.set(n.id(), { ...pos });
    });
  }

  layout() {
    const t0 = performance.now();
    const cy = this.cy;
    const leaves = cy.nodes().not(':parent').filter((n) => !n.data('ns'));
    let done = false;
    if (leaves.length <= LARGE) {
      try {
        cy.layout({
          name: 'dagre', rankDir: 'LR', nodeSep: 28, rankSep: 90, edgeSep: 8, ranker: 'network-simplex',
          animate: false, fit: true, padding: 40, nodeDimensionsIncludeLabels: true,
        }).run();
        done = true;
      } catch {
        // dagre fails on some compound graphs; the layered layout below always works.
      }
    }
    if (!done) {
      const pos = layeredLayout(
        leaves.map((n) => ({ id: n.id(), group: n.ancestors().last().id() ?? '' })),
        cy.edges().map((e) => ({ source: e.data('source'), target: e.data('target') })));
      cy.batch(() => leaves.forEach((n) => { const p = pos.get(n.id()); if (p) n.position(p); }));
      this._fitPositions(pos);
    }
    leaves.forEach((x) => this.positions.set(x.id(), { ...x.position() }));
    performance.measure('meshlens:layout', { start: t0 });
  }

  fit() { this.cy.fit(undefined, 40); }

  // Fits the viewport to node centres: cy.fit() measures every label and edge
  // first, which on a large graph costs more than the layout itself.
  _fitPositions(pos) {
    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    for (const p of pos.values()) { x1 = Math.min(x1, p.x); y1 = Math.min(y1, p.y); x2 = Math.max(x2, p.x); y2 = Math.max(y2, p.y); }
    if (!Number.isFinite(x1)) return;
    const pad = 60, w = this.cy.width(), h = this.cy.height();
    const zoom = Math.min(this.cy.maxZoom(), Math.max(this.cy.minZoom(), Math.min((w - 2 * pad) / Math.max(1, x2 - x1), (h - 2 * pad) / Math.max(1, y2 - y1))));
    this.cy.viewport({ zoom, pan: { x: w / 2 - zoom * (x1 + x2) / 2, y: h / 2 - zoom * (y1 + y2) / 2 } });
  }

  select(id) {
    const cy = this.cy;
    cy.batch(() => {
      cy.elements(':selected').unselect();
      cy.edges('.nbr').removeClass('nbr');
      if (!id) return;
      const el = cy.getElementById(id);
      if (el.empty()) return;
      el.select();
      if (el.isNode()) el.connectedEdges().addClass('nbr');
    });
  }

  /** Marks ids (nodes or edges) and fades the rest; rootIds get the root-cause mark. */
  highlight(ids, rootIds = []) {
    const cy = this.cy;
    cy.batch(() => {
      cy.elements().removeClass('hl faded rootcause');
      if (!ids || ids.length === 0) return;
      const set = cy.collection();
      for (const id of ids) { const el = cy.getElementById(id); if (el.nonempty()) set.merge(el.isEdge() ? el.union(el.connectedNodes()) : el); }
      for (const id of rootIds) { const el = cy.getElementById(id); if (el.nonempty()) { el.addClass('rootcause'); set.merge(el); } }
      set.addClass('hl');
      cy.elements().not(set).not(':parent').addClass('faded');
    });
  }

  /** Marks search matches; with matches present the rest is faded. */
  markMatches(matches) {
    const cy = this.cy;
    cy.batch(() => {
      cy.nodes().removeClass('match');
      if (!matches || matches.size === 0) { cy.elements().removeClass('faded'); return; }
      cy.elements().forEach((el) => {
        if (el.isParent()) return;
        const hit = el.isNode() ? matches.has(el.id()) : (matches.has(el.data('source')) || matches.has(el.data('target')));
        el.toggleClass('match', el.isNode() && hit);
        el.toggleClass('faded', !hit);
      });
    });
  }

  /** Where a node is on the screen, for tests and keyboard users. */
  renderedCenter(id) {
    const el = this.cy.getElementById(id);
    if (el.empty()) return null;
    const p = el.renderedPosition ? (el.isEdge() ? el.renderedMidpoint() : el.renderedPosition()) : null;
    return p ? { x: p.x, y: p.y } : null;
  }
}
