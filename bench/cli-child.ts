/**
 * For the benchmarks that run the CLI as its own process, as users do (bench/e2e.ts,
 * bench/stream.ts): dist/ built first when it is older than the sources (bin/semdedup.mjs
 * otherwise runs them through tsx), and a child's peak RSS.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Newest mtime of the .ts files under `dir` (what bin/semdedup.mjs compares with dist/.build-stamp). */
function newestTs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestTs(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * bin/semdedup.mjs runs dist/ only when it is newer than every source, else the sources through
 * tsx (~0.3–1 s of transform per run): build first so "ours" is timed as users run it.
 */
export function ensureBuilt(): void {
  const stamp = path.join(ROOT, 'dist', '.build-stamp');
  const fresh = (): boolean => existsSync(stamp) && statSync(stamp).mtimeMs >= Math.max(newestTs(path.join(ROOT, 'src')), newestTs(path.join(ROOT, 'topologies')));
  if (fresh()) return;
  console.log('building dist/ (npm run build) so the CLI runs compiled');
  const res = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (res.status !== 0 || !fresh()) console.warn(`warning: build failed or sources changed meanwhile; ours runs through tsx\n${res.stdout ?? ''}${res.stderr ?? ''}`);
}

/** Peak RSS (VmHWM) of a running process in kB; null once it is gone. */
export function readVmHwmKb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null; // the process is gone
  }
}
