// Browser tests of the dashboard served by the real binary in demo mode:
//   MESHLENS_BIN=bin/meshlens node --test e2e/dashboard.test.js
// (make test runs them through the ui-e2e target). Without MESHLENS_BIN they
// are skipped, unless MESHLENS_INTEGRATION=1, where a missing binary fails.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { launch, openPage, startProcess, waitForNodes, clickNode, screenshot } from './browser.js';

const BIN = process.env.MESHLENS_BIN;
const DELTA_TIMEOUT = Number(process.env.MESHLENS_E2E_DELTA_TIMEOUT_MS ?? 150000);
const missing = !BIN || !fs.existsSync(BIN);
if (missing && process.env.MESHLENS_INTEGRATION === '1') throw new Error(`MESHLENS_BIN=${BIN ?? ''}: binary not found (run make build)`);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

describe('dashboard on meshlens serve --demo', { skip: missing ? 'MESHLENS_BIN not set: build with make build' : false }, () => {
  let browser, server, page, problems, context;
  before(async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    server = await startProcess(BIN, ['serve', '--demo', '--http-addr', `127.0.0.1:${port}`], { readyURL: url, timeoutMs: 60000 });
    browser = await launch();
    ({ page, problems, context } = await openPage(browser, url));
  });
  after(async () => {
    await context?.close();
    await browser?.close();
    await server?.stop();
  });

  it('renders the bookinfo graph', async () => {
    await page.goto('/');
    await waitForNodes(page, ['productpage', 'reviews', 'ratings', 'details'], 60000);
    const kinds = await page.evaluate(() => [...new Set(window.__meshlens.cy.nodes().filter((n) => !n.isParent()).map((n) => n.data('kind')))]);
    assert.ok(kinds.length > 0, 'nodes have kinds');
    const edges = await page.evaluate(() => window.__meshlens.cy.edges().length);
    assert.ok(edges >= 4, `only ${edges} edges`);
    assert.deepEqual(problems, []);
  });

  it('shows the live state', async () => {
    await page.locator('#live-status[data-state="live"]').waitFor({ timeout: 20000 });
    assert.equal((await page.textContent('#live-status .text')).trim(), 'Live');
  });

  it('opens the side panel of a clicked node', async () => {
    await clickNode(page, 'productpage');
    await page.locator('#tab-details .panel-title', { hasText: 'productpage' }).waitFor();
    const text = await page.textContent('#tab-details');
    assert.match(text, /Inbound/);
    assert.match(text, /Callees \([1-9]/, 'productpage calls something');
    await page.locator('#tab-details h3', { hasText: 'Last hour' }).waitFor();
    await screenshot(page, 'demo-productpage');
    assert.deepEqual(problems, []);
  });

  it('receives a live update', async () => {
    await page.waitForFunction(() => window.__meshlens.perf.deltas > 0, null, { timeout: DELTA_TIMEOUT });
    await waitForNodes(page, ['productpage']);
    assert.deepEqual(problems, []);
  });

  it('switches to the app view', async () => {
    await page.selectOption('#view', 'app');
    await page.waitForFunction(() => window.__meshlens.model.view === 'app' && window.__meshlens.cy.nodes().some((n) => n.data('label') === 'reviews'), null, { timeout: 20000 });
    await screenshot(page, 'demo-app-view');
    await page.selectOption('#view', 'workload');
    await waitForNodes(page, ['reviews-v']);
    assert.deepEqual(problems, []);
  });

  it('replays a past minute and returns to live', async () => {
    const before = await page.evaluate(() => window.__meshlens.perf.snapshots);
    await page.locator('#replay-slider').fill('-60');
    await page.locator('#live-status[data-state="replay"]').waitFor();
    await page.waitForFunction((n) => window.__meshlens.perf.snapshots > n, before, { timeout: 20000 });
    assert.equal(await page.textContent('#replay-msg'), '', 'replay reported an error');
    await page.click('#replay-live');
    await page.locator('#live-status[data-state="live"]').waitFor();
    await waitForNodes(page, ['productpage']);
    assert.deepEqual(problems, []);
  });

  it('shows the light theme and the error labels legibly', async () => {
    await page.click('#theme-btn');
    await page.selectOption('#labels', 'errors');
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light');
    await screenshot(page, 'demo-light-errors');
    await page.selectOption('#labels', 'rps');
    await page.click('#theme-btn');
  });

  it('answers "which service is failing?" in the chat when the assistant is there', async (t) => {
    const res = await fetch(new URL('/api/v1/chat', page.url()), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sessionId: 'e2e-probe', message: 'hello' }) });
    if (res.status === 404) { t.skip('no /api/v1/chat on this server yet'); return; }
    await page.click('[data-tab="chat"]');
    await page.fill('#tab-chat textarea', 'which service is failing?');
    await page.keyboard.press('Enter');
    await page.locator('#tab-chat .msg.assistant:not(.pending), #tab-chat .msg.error').first().waitFor({ timeout: 30000 });
    assert.equal(await page.locator('#tab-chat .msg.error').count(), 0, await page.textContent('#tab-chat'));
    await screenshot(page, 'demo-chat');
    assert.deepEqual(problems, []);
  });
});
