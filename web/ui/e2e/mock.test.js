// Browser tests of the dashboard against the mock API (mock/server.js): the
// parts whose server side other packages are still building (anomalies, chat,
// proposals), bad input (hostile names, missing endpoints) and reconnects.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, startMock, waitForNodes, clickNode, clickEdge, screenshot } from './browser.js';

const RATINGS = 'workload|bookinfo|ratings-v1';

describe('dashboard on the mock API', () => {
  let browser, mock;
  before(async () => {
    browser = await launch();
    mock = await startMock(['--delta-ms', '0', '--xss']);
  });
  after(async () => {
    await browser?.close();
    await mock?.stop();
  });

  it('shows hostile service names as text', async () => {
    const { page, problems, context } = await openPage(browser, mock.url);
    await page.goto('/');
    await waitForNodes(page, ['productpage', '<img src=x']);
    await clickNode(page, '<img src=x');
    await page.locator('.panel-title').filter({ hasText: '<img src=x onerror' }).waitFor();
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'markup in a name ran');
    assert.equal(await page.locator('#tab-details img').count(), 0);
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('opens the side panel of a clicked edge', async () => {
    const { page, problems, context } = await openPage(browser, mock.url);
    await page.goto('/');
    await waitForNodes(page, ['reviews-v2', 'ratings-v1']);
    await page.selectOption('#labels', 'p95');
    await clickEdge(page, 'reviews-v2', 'ratings-v1');
    await page.locator('#tab-details .panel-title', { hasText: 'reviews-v2 → ratings-v1' }).waitFor();
    const text = await page.textContent('#tab-details');
    assert.match(text, /spiffe:\/\/cluster.local\/ns\/bookinfo\/sa\/reviews/);
    assert.match(text, /As reported by the caller/);
    await page.locator('#tab-details .spark path').first().waitFor();
    await screenshot(page, 'mock-edge-panel');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('reconnects after the websocket drops and applies deltas', async () => {
    const { page, problems, context } = await openPage(browser, mock.url);
    await page.goto('/');
    await page.locator('#live-status[data-state="live"]').waitFor();
    await waitForNodes(page, ['reviews-v2']);
    const seen = await page.evaluate(() => window.__meshlens.perf.liveStates.length);
    await fetch(mock.url + '/__mock/drop', { method: 'POST' });
    // The reconnect may be quicker than a poll: read the state history.
    await page.waitForFunction((n) => window.__meshlens.perf.liveStates.slice(n).includes('reconnecting'), seen);
    await page.locator('#live-status[data-state="live"]').waitFor({ timeout: 15000 });
    const positions = () => page.evaluate(() => Object.fromEntries(window.__meshlens.cy.nodes().filter((n) => !n.isParent()).map((n) => [n.id(), n.position()])));
    const before = await positions();
    const labelsBefore = await page.evaluate(() => window.__meshlens.cy.edges().map((e) => e.data('label')).join());
    for (let i = 1; i <= 3; i++) {
      await fetch(mock.url + '/__mock/tick', { method: 'POST' });
      await page.waitForFunction((n) => window.__meshlens.perf.deltas >= n, i);
    }
    // The numbers changed, the picture did not move.
    assert.notEqual(await page.evaluate(() => window.__meshlens.cy.edges().map((e) => e.data('label')).join()), labelsBefore);
    assert.deepEqual(await positions(), before);
    assert.equal(await page.evaluate(() => window.__meshlens.perf.layouts), 1);
    // Pause: deltas are kept but the indicator says paused.
    await page.click('#live-status');
    await page.locator('#live-status[data-state="paused"]').waitFor();
    await page.click('#live-status');
    await page.locator('#live-status[data-state="live"]').waitFor();
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('shows an injected fault as an anomaly with the root cause highlighted, and the chat answer', async () => {
    const { page, problems, context } = await openPage(browser, mock.url);
    await page.goto('/');
    await waitForNodes(page, ['ratings-v1']);
    await page.locator('#live-status[data-state="live"]').waitFor();
    await fetch(mock.url + '/__mock/fault', { method: 'POST' });
    await page.locator('#anomaly-count').filter({ hasText: '2' }).waitFor();
    await page.click('[data-tab="anomalies"]');
    await page.locator('.anomaly-head', { hasText: 'Incident' }).click();
    await page.locator('.anomaly .rootcauses li.top', { hasText: 'ratings' }).waitFor();
    assert.ok(await page.evaluate((id) => window.__meshlens.cy.getElementById(id).hasClass('rootcause'), RATINGS), 'root cause not marked on the graph');
    // The suspects section follows the live feed (refreshed after detection changes).
    await page.locator('.suspects .rootcauses li.top', { hasText: 'ratings' }).waitFor();
    await page.locator('.suspects .rootcauses li.top .link').click();
    await page.locator('.panel-title', { hasText: 'ratings-v1' }).waitFor();
    assert.equal(await page.evaluate((id) => window.__meshlens.cy.getElementById(id).data('health'), RATINGS), 'failing');
    await screenshot(page, 'mock-incident');

    await page.click('[data-tab="chat"]');
    await page.fill('#tab-chat textarea', 'which service is failing?');
    await page.keyboard.press('Enter');
    await page.locator('.msg.assistant', { hasText: 'ratings is failing' }).waitFor();
    await page.locator('.msg.assistant .link-chip', { hasText: 'ratings-v1' }).click();
    await page.locator('.panel-title', { hasText: 'ratings-v1' }).waitFor();
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('refuses approval for a viewer and approves for an approver', async () => {
    for (const [token, want] of [['viewer-token', /Refused: not allowed: POST \/api\/v1\/proposals\/p-1\/approve needs role approver; ci-bot has viewer/], ['approver-token', /Approved/]]) {
      const { page, problems, context } = await openPage(browser, mock.url);
      await page.goto('/');
      await page.locator('#user-btn', { hasText: 'Sign in' }).click();
      await page.fill('#user-menu input', 'wrong');
      await page.keyboard.press('Enter');
      await page.locator('#user-menu .error', { hasText: 'not accepted' }).waitFor();
      await page.fill('#user-menu input', token);
      await page.keyboard.press('Enter');
      await page.locator('#user-btn', { hasText: token === 'viewer-token' ? 'ci-bot · viewer' : 'alice · approver' }).waitFor();
      await page.click('[data-tab="proposals"]');
      await page.locator('.proposal-head', { hasText: 'Outlier detection for ratings' }).click();
      await page.locator('pre.code', { hasText: 'outlierDetection' }).first().waitFor();
      await page.click('.proposal .approve');
      await page.locator('.decision').filter({ hasText: want }).waitFor();
      if (token === 'viewer-token') await screenshot(page, 'mock-proposal-refused');
      else await page.locator('.proposal .state', { hasText: 'approved' }).waitFor();
      // The refusals are 401/403 answers, which the browser logs by itself.
      assert.deepEqual(problems.filter((p) => !/status of 40[13]/.test(p)), [], token);
      await context.close();
    }
  });

  it('compares two times in the what-changed view and replays history', async () => {
    const { page, problems, context } = await openPage(browser, mock.url, { colorScheme: 'light' });
    await page.goto('/');
    await waitForNodes(page, ['productpage']);
    await page.click('[data-tab="changes"]');
    await page.click('#tab-changes button.primary');
    await page.locator('#tab-changes').filter({ hasText: /No significant change|errors up|added|removed|traffic|slower/ }).waitFor();
    const before = await page.evaluate(() => window.__meshlens.perf.snapshots);
    await page.locator('#replay-slider').fill('-600');
    await page.locator('#live-status[data-state="replay"]').waitFor();
    await page.waitForFunction((n) => window.__meshlens.perf.snapshots > n, before);
    assert.match(await page.textContent('#replay-time'), /^\d\d:\d\d:\d\d$/);
    await screenshot(page, 'mock-replay-light');
    await page.click('#replay-live');
    await page.locator('#live-status[data-state="live"]').waitFor();
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('dashboard on a server without the optional APIs', () => {
  let browser, mock;
  before(async () => {
    browser = await launch();
    mock = await startMock(['--delta-ms', '0', '--missing', 'anomalies,incidents,chat,proposals,history']);
  });
  after(async () => {
    await browser?.close();
    await mock?.stop();
  });

  it('degrades to readable "not available" states', async () => {
    const { page, problems, context } = await openPage(browser, mock.url);
    // 404s are expected here; the browser logs each failed fetch as a console error.
    await page.goto('/');
    await waitForNodes(page, ['productpage']);
    await clickNode(page, 'productpage');
    await page.locator('#tab-details', { hasText: 'history not available' }).waitFor();
    await page.click('[data-tab="anomalies"]');
    await page.locator('#tab-anomalies', { hasText: 'Anomaly detection not available' }).waitFor();
    await page.click('[data-tab="proposals"]');
    await page.locator('#tab-proposals', { hasText: 'Proposals not available' }).waitFor();
    await page.click('[data-tab="chat"]');
    await page.fill('#tab-chat textarea', 'which service is failing?');
    await page.keyboard.press('Enter');
    await page.locator('.msg.error', { hasText: 'not available' }).waitFor();
    const body = await page.textContent('body');
    assert.doesNotMatch(body, /goroutine|TypeError|at \w+ \(|undefined|\[object Object\]/);
    assert.deepEqual(problems, []);
    await context.close();
  });
});
