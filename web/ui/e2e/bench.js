// Browser benchmark of the dashboard on a large mesh (1,000 nodes, 5,000 edges
// by default) served by the mock API: time to first render and cost of one
// live update, printed with their ratio to the floors the issue sets
// ("works at 1,000 nodes / 5,000 edges without freezing").
//   node e2e/bench.js [nodes] [edges] [updates]
import { launch, openPage, startMock, screenshot } from './browser.js';

const [N = 1000, M = 5000, UPDATES = 10] = process.argv.slice(2).map(Number);
// Floors: the first picture within 3 s of opening the page, and each update
// (parse + apply + redraw) under 100 ms, the budget for a response to feel instant.
const FIRST_RENDER_FLOOR_MS = 3000;
const UPDATE_FLOOR_MS = 100;

const mock = await startMock(['--large', `${N},${M}`, '--delta-ms', '0']);
const browser = await launch();
try {
  const { page, problems } = await openPage(browser, mock.url);
  await page.addInitScript(() => {
    window.__longtasks = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push(e.duration); }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto('/');
  await page.waitForFunction(() => window.__meshlens?.perf.firstPaintAt != null, null, { timeout: 120000 });
  await page.locator('#live-status[data-state="live"]').waitFor();
  const first = await page.evaluate(() => ({ ...window.__meshlens.perf, measures: performance.getEntriesByType('measure').map((m) => `${m.name.replace('meshlens:', '')} ${m.duration.toFixed(0)}ms`).join(', '), nodes: window.__meshlens.cy.nodes().length, edges: window.__meshlens.cy.edges().length }));
  await page.evaluate(() => { window.__longtasks = []; });
  for (let i = 0; i < UPDATES; i++) {
    const before = await page.evaluate(() => window.__meshlens.perf.deltas);
    await fetch(mock.url + '/__mock/tick', { method: 'POST' });
    await page.waitForFunction((n) => window.__meshlens.perf.deltas > n, before, { timeout: 30000 });
    // Let the canvas paint before the next update.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  }
  const res = await page.evaluate(() => ({ updateMs: window.__meshlens.perf.updateMs, longtasks: window.__longtasks }));
  const sorted = [...res.updateMs].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  const maxLong = res.longtasks.length ? Math.max(...res.longtasks) : 0;
  const f = (x) => x.toFixed(1);
  console.log(`ui bench: ${first.nodes} canvas nodes (incl. namespace boxes), ${first.edges} edges, ${UPDATES} live updates of every edge`);
  console.log(`  page open -> graph painted: ${f(first.firstPaintAt)} ms (floor ${FIRST_RENDER_FLOOR_MS} ms, ratio ${(first.firstPaintAt / FIRST_RENDER_FLOOR_MS).toFixed(2)})`);
  console.log(`  snapshot received -> graph painted (layout included): ${f(first.firstRenderMs)} ms [${first.measures}]`);
  console.log(`  update (parse+apply+redraw) median ${f(q(0.5))} ms, p95 ${f(q(0.95))} ms (floor ${UPDATE_FLOOR_MS} ms, ratio ${(q(0.95) / UPDATE_FLOOR_MS).toFixed(2)})`);
  console.log(`  longest main-thread task during updates (incl. paint): ${f(maxLong)} ms`);
  await screenshot(page, 'bench-large');
  if (problems.length) { console.log('  page problems:', problems); process.exitCode = 1; }
} finally {
  await browser.close();
  await mock.stop();
}
