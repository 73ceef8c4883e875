// A fast layered layout for large graphs, where dagre takes seconds. Ranks
// come from the longest path over all edges, so calls flow left to right
// across namespaces too; each namespace is then drawn as a block whose columns
// are the ranks it uses (tall columns wrapped, one barycentre pass against
// crossings), and the blocks are packed in rows. Linear in nodes + edges.

/**
 * nodes: [{id, group}], edges: [{source, target}].
 * Returns Map id -> {x, y}.
 */
export function layeredLayout(nodes, edges, { colGap = 170, rowGap = 56, blockGap = 120, maxRowWidth, maxColumn = 24 } = {}) {
  const groups = new Map();
  for (const n of nodes) {
    const g = n.group ?? '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(n.id);
  }
  const groupOf = new Map(nodes.map((n) => [n.id, n.group ?? '']));
  const out = new Map(), inn = new Map();
  for (const n of nodes) { out.set(n.id, []); inn.set(n.id, []); }
  for (const e of edges) {
    if (!out.has(e.source) || !out.has(e.target) || e.source === e.target) continue;
    out.get(e.source).push(e.target);
    inn.get(e.target).push(e.source);
  }
  const rank = ranks(nodes.map((n) => n.id), out, inn);

  const blocks = [];
  for (const [g, ids] of [...groups].sort((a, b) => String(a[0]).localeCompare(String(b[0])))) {
    const byRank = new Map();
    for (const id of ids) {
      const r = rank.get(id);
      if (!byRank.has(r)) byRank.set(r, []);
      byRank.get(r).push(id);
    }
    // Columns: the ranks this namespace uses, in order; a tall one is wrapped.
    const cols = [];
    for (const r of [...byRank.keys()].sort((a, b) => a - b)) {
      const col = byRank.get(r).sort();
      for (let i = 0; i < col.length; i += maxColumn) cols.push(col.slice(i, i + maxColumn));
    }
    // Order within a column by the mean position of callers in the column before.
    const pos = new Map();
    cols.forEach((col, c) => {
      if (c > 0 && col.length > 1) {
        const bary = (id) => {
          const ps = inn.get(id).filter((p) => pos.has(p));
          return ps.length ? ps.reduce((s, p) => s + pos.get(p), 0) / ps.length : Infinity;
        };
        const keyed = col.map((id) => [id, bary(id)]);
        keyed.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
        col.splice(0, col.length, ...keyed.map((k) => k[0]));
      }
      col.forEach((id, i) => pos.set(id, i));
    });
    const height = Math.max(...cols.map((c) => c?.length ?? 0));
    blocks.push({ g, cols, w: Math.max(1, cols.length) * colGap, h: Math.max(1, height) * rowGap });
  }

  const positions = new Map();
  const total = blocks.reduce((s, b) => s + b.w * b.h, 0);
  const rowWidth = maxRowWidth ?? Math.max(800, Math.sqrt(total) * 1.6);
  let x = 0, y = 0, rowH = 0;
  for (const b of blocks) {
    if (x > 0 && x + b.w > rowWidth) { x = 0; y += rowH + blockGap; rowH = 0; }
    b.cols.forEach((col, c) => {
      if (!col) return;
      const off = ((b.h / rowGap) - col.length) * rowGap / 2; // centre short columns
      col.forEach((id, i) => positions.set(id, { x: x + c * colGap, y: y + off + i * rowGap }));
    });
    x += b.w + blockGap;
    rowH = Math.max(rowH, b.h);
  }
  return positions;
}

/** Longest-path ranks from the sources; cycles are broken at back edges of a DFS. */
function ranks(ids, out, inn) {
  const inGroup = new Set(ids);
  const state = new Map(); // 1 visiting, 2 done
  const order = [];
  const back = new Set();
  for (const root of ids) {
    if (state.has(root)) continue;
    const stack = [[root, 0]];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const succ = out.get(top[0]).filter((s) => inGroup.has(s));
      if (top[1] < succ.length) {
        const s = succ[top[1]++];
        const st = state.get(s);
        if (st === 1) back.add(top[0] + '\u0000' + s);
        else if (!st) { state.set(s, 1); stack.push([s, 0]); }
      } else {
        state.set(top[0], 2);
        order.push(top[0]);
        stack.pop();
      }
    }
  }
  order.reverse(); // topological order of the DAG without back edges
  const rank = new Map();
  for (const id of order) {
    let r = 0;
    for (const p of inn.get(id)) {
      if (!inGroup.has(p) || back.has(p + '\u0000' + id)) continue;
      r = Math.max(r, (rank.get(p) ?? 0) + 1);
    }
    rank.set(id, r);
  }
  return rank;
}
