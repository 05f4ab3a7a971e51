/**
 * End-to-end benchmark: `semdedup run` against the NumPy port (bench/numpy_semdedup.py), side
 * by side in one run, on the same cached synthetic data.
 *
 *   npx tsx bench/e2e.ts [--rows 50000] [--dim 768] [--clusters 50] [--big-rows 200000]
 *                        [--eps 0.01] [--repeat 1] [--backend cpu] [--skip-big] [--big-numpy]
 *                        [--ours node|numpy] [--timeout-s 1800]
 *
 * Cases:
 *   b1  given centroids: --centroids F.npy --eps E, both tools
 *   b2  k-means fitted in the run: --max-iter 30 --tol 0 --seed 42 --eps E, both tools
 *   c   peak RSS: b1's, and ours on --big-rows rows with given centroids (numpy too with --big-numpy)
 * Each child's wall time and peak RSS come from `/usr/bin/time -f '%e %M'` when it works, else
 * from polling /proc/<pid>/status (VmHWM; forced with E2E_NO_GNU_TIME=1). Children get OPENBLAS_NUM_THREADS / OMP_NUM_THREADS = 2
 * unless the caller set them. Outputs are compared with bench/compare_outputs.py.
 * `--ours numpy` puts the NumPy port in the "ours" slot too: a check of the harness itself.
 *
 * Writes bench/results/e2e.json and bench/results/e2e.md (a table for docs/BENCHMARKS.md).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt, readVmHwmKb } from './cli-child.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = path.join(ROOT, 'bench', 'results');
const PYTHON = process.env.PYTHON ?? 'python3';
const DATA_SEED = 1;
const DUP_FRACTION = 0.05;

interface Options {
  readonly rows: number;
  readonly dim: number;
  readonly clusters: number;
  readonly bigRows: number;
  readonly eps: number;
  readonly repeat: number;
  readonly backend: string;
  readonly skipBig: boolean;
  readonly bigNumpy: boolean;
  readonly ours: 'node' | 'numpy';
  readonly timeoutS: number;
}

function parseOptions(argv: readonly string[]): Options {
  const opts: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const [key, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    if (key === 'skip-big' || key === 'big-numpy' || key === 'help') opts[key] = true;
    else opts[key] = inline ?? argv[++i] ?? '';
  }
  if (opts.help) {
    console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
    process.exit(0);
  }
  const num = (key: string, dflt: number): number => {
    const v = opts[key];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${key} must be a positive number, got ${String(v)}`);
    return n;
  };
  const known = ['rows', 'dim', 'clusters', 'big-rows', 'eps', 'repeat', 'backend', 'skip-big', 'big-numpy', 'ours', 'timeout-s'];
  for (const key of Object.keys(opts)) if (!known.includes(key)) throw new Error(`unknown flag --${key}`);
  const ours = (opts.ours ?? 'node') as string;
  if (ours !== 'node' && ours !== 'numpy') throw new Error('--ours must be node or numpy');
  return {
    rows: num('rows', 50000),
    dim: num('dim', 768),
    clusters: num('clusters', 50),
    bigRows: num('big-rows', 200000),
    eps: num('eps', 0.01),
    repeat: Math.round(num('repeat', 1)),
    backend: (opts.backend as string | undefined) ?? 'cpu',
    skipBig: opts['skip-big'] === true,
    bigNumpy: opts['big-numpy'] === true,
    ours,
    timeoutS: num('timeout-s', 1800),
  };
}

// ------------------------------------------------------------------------------------ data

interface DataSet {
  readonly parquetDir: string;
  readonly centroids: string;
  readonly rows: number;
  readonly bytes: number;
}

/** Generate (once) the Parquet set and its centroids; reused while `done.json` matches. */
function ensureData(rows: number, dim: number, clusters: number): DataSet {
  const dir = path.join(RESULTS, `data-${rows}x${dim}-c${clusters}-s${DATA_SEED}`);
  const parquetDir = path.join(dir, 'parquet');
  const centroids = path.join(dir, 'centroids.npy');
  const marker = path.join(dir, 'done.json');
  const files = Math.max(4, Math.round(rows / 12500)); // ~12.5k rows a file at any size
  const spec = { rows, dim, clusters, files, dupFraction: DUP_FRACTION, seed: DATA_SEED };
  const cached = existsSync(marker) && JSON.stringify(JSON.parse(readFileSync(marker, 'utf8')).spec) === JSON.stringify(spec);
  if (!cached) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    console.log(`generating ${rows} x ${dim} (${clusters} clusters) into ${path.relative(ROOT, dir)} ...`);
    const started = performance.now();
    const gen = spawnSync(
      PYTHON,
      ['bench/gen_data.py', '--rows', `${rows}`, '--dim', `${dim}`, '--clusters', `${clusters}`, '--dup-fraction',
        `${DUP_FRACTION}`, '--files', `${files}`, '--seed', `${DATA_SEED}`, '--out', parquetDir, '--write-centroids', centroids],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (gen.status !== 0) throw new Error(`gen_data.py failed (exit ${gen.status})`);
    writeFileSync(marker, JSON.stringify({ spec, generatedS: (performance.now() - started) / 1000 }, null, 2));
  }
  const bytes = readdirSync(parquetDir).reduce((sum, f) => sum + statSync(path.join(parquetDir, f)).size, 0);
  return { parquetDir, centroids, rows, bytes };
}

/** Read every input file once so neither tool pays the cold page cache for the other. */
function warmPageCache(data: DataSet): void {
  for (const f of readdirSync(data.parquetDir)) readFileSync(path.join(data.parquetDir, f));
}

// ------------------------------------------------------------------------------------ measure

interface Measurement {
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly wallS: number;
  readonly peakRssMb: number | null;
  readonly method: 'gnu-time' | 'proc-poll';
  readonly log: string;
  readonly summary: unknown;
  readonly error?: string;
}

const gnuTimeWorks = ((): boolean => {
  if (process.env.E2E_NO_GNU_TIME === '1' || !existsSync('/usr/bin/time')) return false;
  const probe = spawnSync('/usr/bin/time', ['-f', '%e %M', 'true'], { encoding: 'utf8' });
  return probe.status === 0 && /^\d+(\.\d+)? \d+\s*$/m.test(probe.stderr);
})();

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const v of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[v] ??= '2';
  return env;
}

/** Run one child to completion; wall time and peak RSS, its output in a log file. */
async function measure(name: string, argv: readonly string[], outDir: string, timeoutS: number): Promise<Measurement> {
  const logDir = path.join(RESULTS, 'logs');
  mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${name}.log`);
  const timeFile = path.join(logDir, `${name}.time`);
  rmSync(timeFile, { force: true });
  rmSync(outDir, { recursive: true, force: true });
  const [cmd, ...args] = gnuTimeWorks ? ['/usr/bin/time', '-f', '%e %M', '-o', timeFile, ...argv] : argv;
  const logStream = createWriteStream(log);
  logStream.write(`$ ${argv.join(' ')}\n`);
  const started = performance.now();
  const child = spawn(cmd!, args, { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(logStream, { end: false });
  child.stderr.pipe(logStream, { end: false });
  let hwmKb: number | null = null;
  const poll = gnuTimeWorks
    ? undefined
    : setInterval(() => {
        const kb = readVmHwmKb(child.pid!);
        if (kb !== null) hwmKb = Math.max(hwmKb ?? 0, kb);
      }, 20);
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutS * 1000);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  const ownWallS = (performance.now() - started) / 1000;
  clearTimeout(killer);
  if (poll) clearInterval(poll);
  await new Promise<void>((resolve) => logStream.end(resolve));

  let wallS = ownWallS;
  let peakRssMb = hwmKb === null ? null : hwmKb / 1024;
  if (gnuTimeWorks && existsSync(timeFile)) {
    // The last line holds "%e %M"; earlier lines may say "Command exited with non-zero status".
    const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
    const m = /^(\d+(?:\.\d+)?) (\d+)$/.exec(last.trim());
    if (m) {
      wallS = Number(m[1]);
      peakRssMb = Number(m[2]) / 1024;
    }
  }
  const summaryPath = path.join(outDir, 'summary.json');
  const summary = existsSync(summaryPath) ? JSON.parse(readFileSync(summaryPath, 'utf8')) : null;
  const ok = exitCode === 0 && !timedOut;
  const error = ok
    ? undefined
    : timedOut
      ? `timed out after ${timeoutS} s`
      : `exit ${exitCode}: ${readFileSync(log, 'utf8').trim().split('\n').slice(-5).join(' | ')}`;
  return { ok, exitCode, wallS, peakRssMb, method: gnuTimeWorks ? 'gnu-time' : 'proc-poll', log: path.relative(ROOT, log), summary, ...(error ? { error } : {}) };
}

// ------------------------------------------------------------------------------------ cases

type Tool = 'ours' | 'numpy';

function toolArgv(tool: Tool, opts: Options, input: string, output: string, flags: readonly string[]): string[] {
  const common = ['--input', input, '--output', output, '--n-clusters', `${opts.clusters}`, ...flags];
  if (tool === 'ours' && opts.ours === 'node') return ['node', 'bin/semdedup.mjs', 'run', ...common, '--backend', opts.backend];
  return [PYTHON, 'bench/numpy_semdedup.py', ...common];
}

interface ToolResult {
  readonly runs: Measurement[];
  readonly wallS: number | null; // median over the successful runs
  readonly peakRssMb: number | null; // max over the successful runs
}

interface CaseResult {
  readonly name: string;
  readonly description: string;
  readonly rows: number;
  readonly flags: readonly string[];
  readonly ours?: ToolResult;
  readonly numpy?: ToolResult;
  readonly ratio?: { readonly wall: number | null; readonly peakRss: number | null };
  readonly compare?: unknown;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function summarize(runs: Measurement[]): ToolResult {
  const ok = runs.filter((r) => r.ok);
  const rss = ok.map((r) => r.peakRssMb).filter((v): v is number => v !== null);
  return { runs, wallS: median(ok.map((r) => r.wallS)), peakRssMb: rss.length ? Math.max(...rss) : null };
}

function compareOutputs(dirA: string, dirB: string): unknown {
  const res = spawnSync(PYTHON, ['bench/compare_outputs.py', dirA, dirB], { cwd: ROOT, encoding: 'utf8' });
  if (res.status !== 0) return { error: (res.stderr || res.stdout).trim() };
  return JSON.parse(res.stdout);
}

async function runCase(
  name: string,
  description: string,
  data: DataSet,
  flags: readonly string[],
  tools: readonly Tool[],
  opts: Options,
): Promise<CaseResult> {
  const runs: Record<Tool, Measurement[]> = { ours: [], numpy: [] };
  const outDir = (tool: Tool) => path.join(RESULTS, `out-${name}-${tool}`);
  for (let r = 0; r < opts.repeat; r++) {
    // Alternate who goes first, so neither always inherits the other's warm caches.
    const order = r % 2 === 0 ? [...tools].reverse() : [...tools];
    for (const tool of order) {
      warmPageCache(data);
      const label = `${name}-${tool}${opts.repeat > 1 ? `-${r + 1}` : ''}`;
      process.stdout.write(`  ${label} ... `);
      const m = await measure(label, toolArgv(tool, opts, data.parquetDir, outDir(tool), flags), outDir(tool), opts.timeoutS);
      console.log(m.ok ? `${m.wallS.toFixed(2)} s, ${m.peakRssMb?.toFixed(0) ?? '?'} MB` : `FAILED (${m.error})`);
      runs[tool].push(m);
    }
  }
  const result: { -readonly [K in keyof CaseResult]: CaseResult[K] } = { name, description, rows: data.rows, flags };
  if (tools.includes('ours')) result.ours = summarize(runs.ours);
  if (tools.includes('numpy')) result.numpy = summarize(runs.numpy);
  if (result.ours && result.numpy) {
    const ratio = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? a / b : null);
    result.ratio = { wall: ratio(result.ours.wallS, result.numpy.wallS), peakRss: ratio(result.ours.peakRssMb, result.numpy.peakRssMb) };
    if (runs.ours.at(-1)?.ok && runs.numpy.at(-1)?.ok) result.compare = compareOutputs(outDir('ours'), outDir('numpy'));
  }
  return result;
}

// ------------------------------------------------------------------------------------ report

function pythonVersions(): Record<string, string> {
  const res = spawnSync(PYTHON, ['-c', 'import sys, numpy, pyarrow; print(sys.version.split()[0], numpy.__version__, pyarrow.__version__)'], {
    encoding: 'utf8',
  });
  const [python, numpy, pyarrow] = (res.stdout ?? '').trim().split(' ');
  return { python: python ?? '?', numpy: numpy ?? '?', pyarrow: pyarrow ?? '?' };
}

const fmt = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? '—' : v.toFixed(digits));

function tableRows(cases: readonly CaseResult[]): string[][] {
  const rows: string[][] = [];
  for (const c of cases) {
    const cmp = c.compare as { fraction?: number; dup_a?: number | null; dup_b?: number | null; dup_equal?: boolean; error?: string } | undefined;
    const agreement = !cmp
      ? ''
      : cmp.error
        ? `compare failed`
        : `${(100 * (cmp.fraction ?? 0)).toFixed(2)}% pairs, dups ${cmp.dup_a}/${cmp.dup_b}${cmp.dup_equal ? ' (equal)' : ''}`;
    rows.push([
      `${c.name} ${c.description}`,
      `${c.rows}`,
      fmt(c.ours?.wallS),
      fmt(c.numpy?.wallS),
      fmt(c.ratio?.wall),
      fmt(c.ours?.peakRssMb, 0),
      fmt(c.numpy?.peakRssMb, 0),
      fmt(c.ratio?.peakRss),
      agreement,
    ]);
  }
  return rows;
}

const HEADER = ['case', 'rows', 'ours s', 'numpy s', 'ours/numpy', 'ours MB', 'numpy MB', 'ours/numpy', 'agreement (ours vs numpy)'];

function printTable(rows: string[][]): void {
  const all = [HEADER, ...rows];
  const widths = HEADER.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((cell, i) => (i === 0 || i === r.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(line(HEADER));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

function markdownTable(rows: string[][]): string {
  return [`| ${HEADER.join(' | ')} |`, `|${HEADER.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

// ------------------------------------------------------------------------------------ main

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  mkdirSync(RESULTS, { recursive: true });
  if (opts.ours === 'node' && !existsSync(path.join(ROOT, 'bin', 'semdedup.mjs'))) console.warn('warning: bin/semdedup.mjs is missing; the ours runs will fail');
  if (opts.ours === 'node') ensureBuilt();
  const data = ensureData(opts.rows, opts.dim, opts.clusters);
  const big = opts.skipBig ? undefined : ensureData(opts.bigRows, opts.dim, opts.clusters);
  const eps = `${opts.eps}`;
  const both: Tool[] = ['ours', 'numpy'];
  const cases: CaseResult[] = [];

  // The machine may be shared: record the load around the runs (ratios are the robust figures).
  const loadBefore = loadavg()[0]!;
  console.log(`b1: given centroids (${opts.rows} x ${opts.dim}, ${opts.clusters} clusters, eps ${eps})`);
  cases.push(await runCase('b1', 'given centroids', data, ['--centroids', data.centroids, '--eps', eps], both, opts));
  console.log('b2: k-means fitted, 30 iterations');
  cases.push(await runCase('b2', 'k-means 30 iter', data, ['--max-iter', '30', '--tol', '0', '--seed', '42', '--eps', eps], both, opts));
  if (big) {
    console.log(`c: peak RSS on ${opts.bigRows} x ${opts.dim}, given centroids`);
    cases.push(await runCase('c-big', 'given centroids', big, ['--centroids', big.centroids, '--eps', eps], opts.bigNumpy ? both : ['ours'], opts));
  }

  const rows = tableRows(cases);
  console.log();
  printTable(rows);
  for (const c of cases) if (c.compare) console.log(`${c.name} outputs: ${JSON.stringify(c.compare)}`);

  const loadAfter = loadavg()[0]!;
  console.log(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${loadAfter.toFixed(2)}`);
  const report = {
    when: new Date().toISOString(),
    loadAverage1m: { before: loadBefore, after: loadAfter },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?',
      memGb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      ...pythonVersions(),
      threads: Object.fromEntries(['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'].map((v) => [v, childEnv()[v]])),
    },
    measuredWith: gnuTimeWorks ? "/usr/bin/time -f '%e %M'" : 'wall clock + /proc/<pid>/status VmHWM polled every 20 ms',
    options: opts,
    data: { main: data, big: big ?? null },
    cases,
  };
  writeFileSync(path.join(RESULTS, 'e2e.json'), JSON.stringify(report, null, 2));
  writeFileSync(path.join(RESULTS, 'e2e.md'), `${markdownTable(rows)}\n`);
  console.log(`\nwrote ${path.relative(ROOT, path.join(RESULTS, 'e2e.json'))} and e2e.md`);
  const failed = cases.flatMap((c) => [c.ours, c.numpy]).some((t) => t && t.runs.some((r) => !r.ok));
  process.exitCode = failed ? 1 : 0;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 2;
});
