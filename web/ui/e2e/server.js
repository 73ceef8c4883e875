// Helpers to run the real meshlens binary for the browser tests: ephemeral
// loopback ports, a throwaway data dir, and (optionally) static API tokens
// made by `meshlens auth token` and configured through a temp config file.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startProcess } from './browser.js';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/**
 * Makes an API token the way an operator would: `meshlens auth token` prints
 * the token on stdout and the config line with its hash on stderr. Returns
 * {name, role, token, sha256}.
 */
export function makeToken(bin, name, role) {
  const r = spawnSync(bin, ['auth', 'token', '--name', name, '--role', role], { encoding: 'utf8', timeout: 30000 });
  const token = r.stdout?.trim();
  const sha256 = r.stderr?.match(/sha256:[0-9a-f]{64}/)?.[0];
  if (r.status !== 0 || !token || !sha256) throw new Error(`meshlens auth token --name ${name} --role ${role}: exit ${r.status}: ${r.stderr ?? r.error}`);
  return { name, role, token, sha256 };
}

/**
 * Starts `meshlens serve` on an ephemeral loopback port with a temp data dir
 * and every telemetry receiver disabled (""), so runs never collide. With
 * tokens, auth is on: they go to auth.tokens of a temp config file (hashes only).
 */
export async function startServe(bin, { demo = '--demo', tokens = [], timeoutMs = 60000 } = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshlens-ui-e2e-'));
  const args = ['serve', demo, '--http-addr', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'),
    '--otlp-grpc-addr', '', '--otlp-http-addr', '', '--jaeger-grpc-addr', '', '--jaeger-http-addr', '', '--zipkin-addr', ''];
  if (tokens.length) {
    const cfg = path.join(dir, 'meshlens.yaml');
    fs.writeFileSync(cfg, ['auth:', '  tokens:',
      ...tokens.map((t) => `    - {name: ${JSON.stringify(t.name)}, role: ${t.role}, sha256: "${t.sha256}"}`), ''].join('\n'));
    args.push('--config', cfg);
  }
  let proc;
  try {
    proc = await startProcess(bin, args, { readyURL: url, timeoutMs });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { ...proc, stop: async () => { await proc.stop(); fs.rmSync(dir, { recursive: true, force: true }); } };
}
