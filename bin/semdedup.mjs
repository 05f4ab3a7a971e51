#!/usr/bin/env node
// Entry point. Runs the compiled CLI from dist/ when it is up to date with the sources
// (`npm install` builds it): the bundle in dist/cli/ (faster to load, see
// scripts/bundle-cli.mjs), else dist/src/. Otherwise the TypeScript sources through tsx — so a
// source edit never runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.build-stamp');

function newestSourceMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const built = existsSync(stamp) && statSync(stamp).mtimeMs >= Math.max(newestSourceMtime(join(root, 'src')), newestSourceMtime(join(root, 'topologies')));
let main;
if (built && existsSync(join(root, 'dist', 'cli', 'main.js'))) {
  ({ main } = await import('../dist/cli/main.js'));
} else if (built) {
  ({ main } = await import('../dist/src/cli/main.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
