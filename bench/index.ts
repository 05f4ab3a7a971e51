/**
 * `npm run bench`: every benchmark, side by side with its competitor, in one run.
 *   kernels  — pairwise and assignment GFLOP/s vs NumPy/OpenBLAS (bench/kernels.ts)
 *   e2e      — `semdedup run` vs the NumPy + pyarrow port, wall time and peak RSS (bench/e2e.ts)
 *   stream   — clips/s drained from a real broker (JSON and Arrow) and verdict latency at 1k clips/s (bench/stream.ts)
 *   scale    — scale-out: router clips/s, worker drain with 1 and 2 worker processes (bench/scale.ts)
 *   io       — Parquet read/write: parquet-wasm vs DuckDB vs pyarrow (bench/io.ts)
 *   probe    — multi-probe pair recall and cost vs single probe (bench/probe.ts)
 * Pass names to run a subset: `npm run bench -- kernels`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const here = import.meta.dirname;
const suites = ['kernels', 'e2e', 'stream', 'scale', 'io', 'probe'];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const selected = wanted.length ? wanted : suites;
let failed = 0;
for (const name of selected) {
  const file = join(here, `${name}.ts`);
  if (!existsSync(file)) {
    console.error(`bench: no ${name} benchmark (${file})`);
    continue;
  }
  console.log(`\n=== ${name} ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench: ${name} exited with ${r.status}`);
  }
}
process.exitCode = failed ? 1 : 0;
