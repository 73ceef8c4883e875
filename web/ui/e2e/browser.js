// Shared helpers for the browser tests and the benchmark: Debian's Chromium
// driven by playwright-core, console errors collected as failures.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Endpoints other components provide; their absence is a documented state, not an error.
const OPTIONAL_API = /\/api\/v1\/(anomalies|incidents|suspects|graph\/diff|chat|proposals|history)\b/;

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/install-chromium.sh`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A page that records console errors, page errors and failed requests to other hosts. */
export async function openPage(browser, baseURL, { viewport = { width: 1440, height: 900 }, storage = {}, colorScheme = 'dark' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, baseURL });
  if (Object.keys(storage).length) {
    await context.addInitScript((kv) => { for (const [k, v] of Object.entries(kv)) localStorage.setItem(k, v); }, storage);
  }
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url ?? '';
    // Optional endpoints answer 404 on a server that does not have them; the
    // dashboard shows "not available" and the browser logs the 404 by itself.
    if (/status of 404/.test(m.text()) && OPTIONAL_API.test(url)) return;
    problems.push(`console error: ${m.text()}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`dialog opened: ${d.message()}`); d.dismiss(); });
  const host = new URL(baseURL).host;
  page.on('request', (r) => {
    const u = new URL(r.url());
    if ((u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'ws:') && u.host !== host) problems.push(`request to another host: ${r.url()}`);
  });
  return { context, page, problems };
}

/** Screenshots go to MESHLENS_ARTIFACTS (default: a temp dir) and their paths are printed. */
export function artifactDir() {
  const dir = process.env.MESHLENS_ARTIFACTS ?? path.join(os.tmpdir(), 'meshlens-ui-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page, name) {
  const file = path.join(artifactDir(), name + '.png');
  await page.screenshot({ path: file });
  console.log(`# screenshot: ${file}`);
  return file;
}

/** Starts a process that prints "listening on URL" or serves on a given URL; returns { url, stop }. */
export async function startProcess(cmd, args, { readyURL, readyLine = /listening on (http:\/\/\S+)/, timeoutMs = 30000, env } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready after ${timeoutMs} ms:\n${out.slice(-2000)}`)), timeoutMs);
    const onData = (b) => {
      out += b.toString();
      const m = !readyURL && out.match(readyLine);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${cmd} exited with ${code}:\n${out.slice(-2000)}`)); });
    if (readyURL) {
      const poll = async () => {
        for (;;) {
          try { const r = await fetch(readyURL + '/readyz'); if (r.ok) { clearTimeout(timer); resolve(readyURL); return; } } catch { /* not yet */ }
          await new Promise((r) => setTimeout(r, 200));
          if (child.exitCode !== null) return;
        }
      };
      poll();
    }
  });
  child.removeAllListeners('exit');
  return {
    url,
    output: () => out,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.on('exit', resolve);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }),
  };
}

export async function startMock(args = []) {
  const dir = path.resolve(import.meta.dirname, '..');
  return startProcess(process.execPath, [path.join(dir, 'mock', 'server.js'), ...args]);
}

/** Waits until the dashboard shows a node whose label contains each of names. */
export async function waitForNodes(page, names, timeout = 30000) {
  await page.waitForFunction((ns) => {
    const m = window.__meshlens;
    if (!m || !m.cy) return false;
    const labels = m.cy.nodes().map((n) => String(n.data('label') ?? ''));
    return ns.every((n) => labels.some((l) => l.includes(n)));
  }, names, { timeout });
}

/** Clicks a node on the canvas like a user would. */
export async function clickNode(page, match) {
  const id = await page.evaluate((mt) => {
    const n = window.__meshlens.cy.nodes().filter((x) => !x.isParent() && String(x.data('label')).includes(mt))[0];
    return n ? n.id() : null;
  }, match);
  if (!id) throw new Error(`no node matching ${match}`);
  const pos = await page.evaluate((i) => window.__meshlens.center(i), id);
  const box = await page.locator('#cy').boundingBox();
  await page.mouse.click(box.x + pos.x, box.y + pos.y);
  return id;
}

/** Clicks the middle of the edge between two nodes whose labels contain src and dst. */
export async function clickEdge(page, src, dst) {
  const id = await page.evaluate(([s, d]) => {
    const e = window.__meshlens.cy.edges().filter((x) => String(x.source().data('label')).includes(s) && String(x.target().data('label')).includes(d))[0];
    return e ? e.id() : null;
  }, [src, dst]);
  if (!id) throw new Error(`no edge ${src} -> ${dst}`);
  const pos = await page.evaluate((i) => window.__meshlens.center(i), id);
  const box = await page.locator('#cy').boundingBox();
  await page.mouse.click(box.x + pos.x, box.y + pos.y);
  return id;
}
