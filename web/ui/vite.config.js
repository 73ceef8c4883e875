import { defineConfig } from 'vite';
import fs from 'node:fs';
import path from 'node:path';

const outDir = path.resolve(import.meta.dirname, 'dist');

// dist/.keep is committed so that `go build` (//go:embed all:dist) works before
// the first npm build; Vite's own emptyOutDir would delete it.
const keepPlaceholder = {
  name: 'meshlens-keep-placeholder',
  buildStart() {
    fs.mkdirSync(outDir, { recursive: true });
    for (const f of fs.readdirSync(outDir)) {
      if (f !== '.keep') fs.rmSync(path.join(outDir, f), { recursive: true, force: true });
    }
  },
};

const api = process.env.MESHLENS_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [keepPlaceholder],
  build: {
    outDir,
    emptyOutDir: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1500,
    sourcemap: false,
  },
  server: {
    // `npm run dev` against a running meshlens or `npm run mock`.
    proxy: {
      '/api/v1/live': { target: api.replace(/^http/, 'ws'), ws: true },
      '/api': api,
    },
  },
});
