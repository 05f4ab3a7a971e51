/**
 * Multi-probe benchmark: pair recall and pairwise wall time of `--probe 1` against `--probe 2`,
 * on two synthetic 50k × 768 data sets with different distributions, same centroids for both.
 *
 *   npx tsx bench/probe.ts [--rows 50000] [--dim 768] [--repeat 3] [--sample 2000] [--eps 0.01]
 *                          [--probe-margin M] [--margins 0.001,0.002,...] [--only a|b] [--backend cpu]
 *
 * Data sets (generated once into bench/results/probe/data-*, reused):
 *   a  bench/gen_data.py: 50 random directions + noise (well separated), 5% near-copies; k = 50.
 *   b  heavy-tailed mixture in a 32-dim subspace: 200 components with Pareto(1.2) weights and
 *      lognormal widths, Student-t (3 df) spread inside a component, small isotropic noise in all
 *      dims, 5% near-copies; k = 200. Dense, overlapping components that k-means must cut through,
 *      so near-duplicate pairs do straddle cluster boundaries.
 * Per data set: k-means is fitted once (`run --n-clusters k --max-iter 30 --tol 0 --fit-fraction
 * 0.4`); then `run --centroids C --eps E` with --probe 1 and --probe 2 --probe-margin M,
 * alternating, `--repeat` times each (median wall times of the pairwise and assign steps, from
 * summary.json); then `recall --sample S --eps E` on the last output of each (pass `--sample all`
 * for every clip: exact over all pairs, slow). The probe 1 recall's what-if table gives the recall
 * and estimated cost of other margins on the same centroids.
 *
 * Step wall times swing with the load of this shared machine, so the pairwise computation is also
 * timed alone, in this process: per cluster, gather the set's rows and run the ranked max, for the
 * own clusters (probe 1) and for the compared sets of the --probe 2 run (own + probed-in, folded
 * into per-clip bests), alternating, `--repeat` times; CPU seconds (process.cpuUsage, which counts
 * ORT's threads) and wall seconds, minima.
 *
 * Writes bench/results/probe.json and bench/results/probe.md (tables for docs/BENCHMARKS.md).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRng, rowSourceFromArray } from '../src/assign/index.js';
import { openRunStore } from '../src/identify/index.js';
import { createKernel } from '../src/kernels/index.js';
import { pairwiseClusterScores, ProbedScores, rankedSetMax } from '../src/pairwise/index.js';
import { DEFAULT_PROBE_MARGIN } from '../src/shared/config.js';
import { writeParquetFile } from '../src/sinks/parquet/index.js';
import { resolveInputFiles, readInputSchema } from '../src/sources/index.js';
import { createValidationState } from '../src/validate/index.js';
import { forEachValidBatch } from '../src/validate/read-validated.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'bench', 'results', 'probe');
const PYTHON = process.env.PYTHON ?? 'python3';

interface Options {
  rows: number;
  dim: number;
  repeat: number;
  sample: number | 'all';
  eps: number;
  probeMargin: number;
  margins: string;
  only: string[];
  backend: string;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
      process.exit(0);
    }
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const [key, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    o[key] = inline ?? argv[++i] ?? '';
  }
  const known = ['rows', 'dim', 'repeat', 'sample', 'eps', 'probe-margin', 'margins', 'only', 'backend'];
  for (const key of Object.keys(o)) if (!known.includes(key)) throw new Error(`unknown flag --${key}`);
  const num = (key: string, dflt: number) => (o[key] === undefined ? dflt : Number(o[key]));
  return {
    rows: num('rows', 50000),
    dim: num('dim', 768),
    repeat: num('repeat', 3),
    sample: o.sample === 'all' ? 'all' : num('sample', 2000),
    eps: num('eps', 0.01),
    probeMargin: num('probe-margin', DEFAULT_PROBE_MARGIN),
    margins: o.margins ?? '0.001,0.002,0.003,0.005,0.01,0.02,0.05',
    only: (o.only ?? 'a,b').split(','),
    backend: o.backend ?? 'cpu',
  };
}

interface DataSet {
  readonly name: string;
  readonly description: string;
  readonly dir: string;
  readonly parquet: string;
  readonly clusters: number;
}

/** Data set a: bench/gen_data.py (the end-to-end benchmark's generator). */
function ensureDataA(opts: Options): DataSet {
  const dir = path.join(OUT, `data-a-${opts.rows}x${opts.dim}`);
  const parquet = path.join(dir, 'parquet');
  if (!existsSync(path.join(dir, 'done'))) {
    rmSync(dir, { recursive: true, force: true });
    console.log(`generating data set a into ${path.relative(ROOT, dir)} ...`);
    const gen = spawnSync(
      PYTHON,
      ['bench/gen_data.py', '--rows', `${opts.rows}`, '--dim', `${opts.dim}`, '--clusters', '50', '--dup-fraction', '0.05', '--files', '4', '--seed', '1', '--out', parquet],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (gen.status !== 0) throw new Error(`gen_data.py failed (exit ${gen.status})`);
    writeFileSync(path.join(dir, 'done'), '');
  }
  return { name: 'a', description: 'gen_data.py: 50 separated directions, 5% near-copies', dir, parquet, clusters: 50 };
}

/** Data set b: heavy-tailed mixture in a low-dimensional subspace (see the header). */
async function ensureDataB(opts: Options): Promise<DataSet> {
  const dir = path.join(OUT, `data-b-${opts.rows}x${opts.dim}`);
  const parquet = path.join(dir, 'parquet');
  if (!existsSync(path.join(dir, 'done'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(parquet, { recursive: true });
    console.log(`generating data set b into ${path.relative(ROOT, dir)} ...`);
    const { ids, x } = heavyTailedMixture(opts.rows, opts.dim, { latent: 32, components: 200, width: 0.3, isotropic: 0.1, dupFraction: 0.05, seed: 7 });
    await writeParquetFile(path.join(parquet, 'part-00000.parquet'), [
      { name: 'id', type: 'utf8', values: ids },
      { name: 'embedding', type: 'fixed-list-float32', values: x, listSize: opts.dim },
    ]);
    writeFileSync(path.join(dir, 'done'), '');
  }
  return { name: 'b', description: 'heavy-tailed mixture, 32-dim subspace, 200 components, 5% near-copies', dir, parquet, clusters: 200 };
}

/**
 * Rows = B·z + isotropic noise, z = component mean + width·t(3)·N(0, I) in `latent` dims, B a
 * random dim × latent basis; component weights Pareto(1.2) (a few huge components, many small),
 * widths lognormal. Near-copies: a base row plus isotropic noise of relative norm U(0, 0.2), as in
 * gen_data.py. Rows are shuffled; ids follow the shuffled order.
 */
export function heavyTailedMixture(
  rows: number,
  dim: number,
  p: { latent: number; components: number; width: number; isotropic: number; dupFraction: number; seed: number },
): { ids: string[]; x: Float32Array } {
  const rng = createRng(p.seed, 1);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.nextFloat())) * Math.cos(2 * Math.PI * rng.nextFloat());
  const basis = Float32Array.from({ length: p.latent * dim }, () => gauss() / Math.sqrt(dim));
  const means = Array.from({ length: p.components }, () => Float64Array.from({ length: p.latent }, () => gauss() / Math.sqrt(p.latent)));
  const weights = means.map(() => 1 / Math.pow(1 - rng.nextFloat(), 1 / 1.2));
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  const cdf = weights.map((w) => (acc += w / total));
  const widths = means.map(() => (p.width * Math.exp(0.5 * gauss())) / Math.sqrt(p.latent));
  const x = new Float32Array(rows * dim);
  const dups = Math.round(rows * p.dupFraction);
  const z = new Float64Array(p.latent);
  for (let r = 0; r < rows - dups; r++) {
    const u = rng.nextFloat();
    let j = cdf.findIndex((c) => c >= u);
    if (j < 0) j = p.components - 1;
    let chi2 = 0;
    for (let t = 0; t < 3; t++) chi2 += gauss() ** 2;
    const spread = widths[j]! * Math.sqrt(3 / chi2);
    for (let l = 0; l < p.latent; l++) z[l] = means[j]![l]! + spread * gauss();
    const o = r * dim;
    for (let d = 0; d < dim; d++) x[o + d] = (p.isotropic * gauss()) / Math.sqrt(dim);
    for (let l = 0; l < p.latent; l++) {
      const zl = z[l]!;
      for (let d = 0; d < dim; d++) x[o + d] += zl * basis[l * dim + d]!;
    }
  }
  const noise = new Float64Array(dim);
  for (let r = rows - dups; r < rows; r++) {
    const src = rng.nextInt(rows - dups) * dim;
    let base2 = 0;
    let noise2 = 0;
    for (let d = 0; d < dim; d++) {
      base2 += x[src + d]! ** 2;
      noise[d] = gauss();
      noise2 += noise[d]! ** 2;
    }
    const f = (0.2 * rng.nextFloat() * Math.sqrt(base2)) / Math.sqrt(noise2);
    for (let d = 0; d < dim; d++) x[r * dim + d] = x[src + d]! + f * noise[d]!;
  }
  // Fisher-Yates over rows, so near-copies are not all at the end.
  const row = new Float32Array(dim);
  for (let i = rows - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    row.set(x.subarray(i * dim, (i + 1) * dim));
    x.copyWithin(i * dim, j * dim, (j + 1) * dim);
    x.set(row, j * dim);
  }
  const ids = Array.from({ length: rows }, (_, i) => `clip-${String(i + 1).padStart(7, '0')}`);
  return { ids, x };
}

/** `semdedup <args> --json`, parsed; throws with the stderr tail on failure. */
function semdedup(args: readonly string[]): Record<string, any> {
  const res = spawnSync(process.execPath, ['bin/semdedup.mjs', ...args, '--json'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.status !== 0) throw new Error(`semdedup ${args.join(' ')} failed (exit ${res.status}):\n${(res.stderr ?? '').slice(-2000)}`);
  return JSON.parse(res.stdout);
}

function minimum(xs: readonly number[]): number {
  return Math.min(...xs);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function benchDataSet(data: DataSet, opts: Options) {
  const centroids = path.join(data.dir, `centroids-k${data.clusters}.npy`);
  if (!existsSync(centroids)) {
    const fit = path.join(data.dir, 'fit');
    console.log(`[${data.name}] fitting k-means (k=${data.clusters}) ...`);
    semdedup(['run', '--input', data.parquet, '--output', fit, '--n-clusters', `${data.clusters}`, '--max-iter', '30', '--tol', '0', '--fit-fraction', '0.4', '--seed', '42', '--backend', opts.backend]);
    writeFileSync(centroids, readFileSync(path.join(fit, 'kmeans_centroids.npy')));
    rmSync(fit, { recursive: true, force: true });
  }
  const runs: Record<1 | 2, Record<string, any>[]> = { 1: [], 2: [] };
  for (let i = 0; i < opts.repeat; i++) {
    for (const probe of i % 2 === 0 ? ([1, 2] as const) : ([2, 1] as const)) {
      const out = path.join(data.dir, `out-p${probe}`);
      const summary = semdedup([
        'run', '--input', data.parquet, '--output', out, '--centroids', centroids, '--eps', `${opts.eps}`, '--backend', opts.backend,
        '--probe', `${probe}`, '--probe-margin', `${opts.probeMargin}`,
      ]);
      runs[probe].push(summary);
      console.log(`[${data.name}] probe ${probe} run ${i + 1}: pairwise ${summary.timings.pairwise}s, assign ${summary.timings.assign}s, ${summary.duplicates} duplicates`);
    }
  }
  const sample = opts.sample === 'all' ? `${opts.rows}` : `${opts.sample}`;
  const recall = (probe: 1 | 2) => {
    console.log(`[${data.name}] recall of probe ${probe} (sample ${sample}) ...`);
    return semdedup(['recall', '--output', path.join(data.dir, `out-p${probe}`), '--sample', sample, '--eps', `${opts.eps}`, '--margins', opts.margins, '--backend', opts.backend]);
  };
  const compute = await computeOnlyTiming(path.join(data.dir, 'out-p2'), opts);
  const r1 = recall(1);
  const r2 = recall(2);
  const med = (probe: 1 | 2, key: string) => median(runs[probe].map((s) => s.timings[key] as number));
  // The machine is shared: the fastest run is the least disturbed one, so ratios of minima too.
  const best = (probe: 1 | 2, key: string) => minimum(runs[probe].map((s) => s.timings[key] as number));
  const last2 = runs[2].at(-1)!;
  return {
    data: data.name,
    description: data.description,
    rows: opts.rows,
    clusters: data.clusters,
    eps: opts.eps,
    probe_margin: opts.probeMargin,
    sample: r1.sample,
    pairs: r1.pairs,
    recall_probe1: r1.recall,
    recall_probe2: r2.recall,
    missed_probe1: r1.missed,
    missed_probe2: r2.missed,
    duplicates_probe1: runs[1].at(-1)!.duplicates,
    duplicates_probe2: last2.duplicates,
    probed_clips: last2.probe.probed_clips,
    pairs_ratio: last2.probe.pairs_ratio,
    pairwise_s_probe1: med(1, 'pairwise'),
    pairwise_s_probe2: med(2, 'pairwise'),
    pairwise_ratio: med(2, 'pairwise') / med(1, 'pairwise'),
    pairwise_ratio_min: best(2, 'pairwise') / best(1, 'pairwise'),
    assign_s_probe1: med(1, 'assign'),
    assign_s_probe2: med(2, 'assign'),
    assign_pairwise_ratio: (med(2, 'assign') + med(2, 'pairwise')) / (med(1, 'assign') + med(1, 'pairwise')),
    assign_pairwise_ratio_min: (best(2, 'assign') + best(2, 'pairwise')) / (best(1, 'assign') + best(1, 'pairwise')),
    pairwise_s_runs: { probe1: runs[1].map((s) => s.timings.pairwise), probe2: runs[2].map((s) => s.timings.pairwise) },
    compute,
    what_if: r1.what_if,
    recall_seconds: r1.seconds,
  };
}

/**
 * The pairwise computation alone (no Parquet, no DuckDB), probe 1 against probe 2 on the sets of a
 * --probe 2 output: rows, clusters, probes and global positions from its `clips` table, normalized
 * embeddings from its kmeans_results.
 */
async function computeOnlyTiming(out: string, opts: Options) {
  const store = await openRunStore(out, ['clips']);
  let clips: Record<string, unknown[]>;
  try {
    clips = await store.columns('SELECT id, row, centroid, coalesce(probe_centroid, -1) AS probe, global_pos FROM clips ORDER BY centroid, rank_pos');
  } finally {
    store.close();
  }
  const n = clips.row!.length;
  const rowOf = new Map((clips.id as unknown[]).map((id, i) => [String(id), clips.row![i] as number]));
  const files = await resolveInputFiles([path.join(out, 'kmeans_results')]);
  const fields = { idField: 'id', embeddingField: 'embedding', metadataFields: [] };
  const schema = await readInputSchema(files, fields);
  const dim = schema.dim!;
  const all = new Float32Array(n * dim);
  await forEachValidBatch(files, { ...fields, batchRows: 16384, schema, reader: 'duckdb', normalize: false }, createValidationState(dim), async (b) => {
    b.ids.forEach((id, r) => all.set(b.embeddings.subarray(r * dim, (r + 1) * dim), rowOf.get(id)! * dim));
  });
  const source = rowSourceFromArray(all, dim);
  // Sets as the batch step builds them: own clips in rank order; own + probed-in by global_pos.
  const own = new Map<number, number[]>();
  const sets = new Map<number, { row: number; pos: number }[]>();
  for (let i = 0; i < n; i++) {
    const row = clips.row![i] as number;
    const pos = clips.global_pos![i] as number;
    for (const c of [clips.centroid![i] as number, clips.probe![i] as number]) {
      if (c < 0) continue;
      if (!sets.has(c)) sets.set(c, []);
      sets.get(c)!.push({ row, pos });
    }
    const c = clips.centroid![i] as number;
    if (!own.has(c)) own.set(c, []);
    own.get(c)!.push(row);
  }
  const setRows = [...sets.values()].map((members) => {
    members.sort((a, b) => a.pos - b.pos);
    return { rows: Int32Array.from(members, (m) => m.row), pos: Int32Array.from(members, (m) => m.pos) };
  });
  const ownRows = [...own.values()].map((rows) => Int32Array.from(rows));
  const kernel = await createKernel(opts.backend as 'cpu');
  const batchSize = 1024;
  const measure = async (fn: () => Promise<void>) => {
    const cpu = process.cpuUsage();
    const started = performance.now();
    await fn();
    const used = process.cpuUsage(cpu);
    return { wall: (performance.now() - started) / 1000, cpu: (used.user + used.system) / 1e6 };
  };
  const probe1 = async () => {
    for (const rows of ownRows) await pairwiseClusterScores(kernel, await source.readRows(rows), dim, batchSize);
  };
  const probe2 = async () => {
    const best = new ProbedScores(n);
    for (const set of setRows) best.foldSet(set.rows, set.pos, await rankedSetMax(kernel, await source.readRows(set.rows), dim, batchSize));
  };
  const t: Record<1 | 2, { wall: number; cpu: number }[]> = { 1: [], 2: [] };
  try {
    await probe1(); // warm-up: sessions, page faults
    for (let i = 0; i < opts.repeat; i++) {
      for (const p of i % 2 === 0 ? ([1, 2] as const) : ([2, 1] as const)) t[p].push(await measure(p === 1 ? probe1 : probe2));
    }
  } finally {
    await kernel.close();
  }
  const best = (p: 1 | 2, key: 'wall' | 'cpu') => minimum(t[p].map((x) => x[key]));
  const result = {
    cpu_s_probe1: best(1, 'cpu'),
    cpu_s_probe2: best(2, 'cpu'),
    cpu_ratio: best(2, 'cpu') / best(1, 'cpu'),
    wall_s_probe1: best(1, 'wall'),
    wall_s_probe2: best(2, 'wall'),
    wall_ratio: best(2, 'wall') / best(1, 'wall'),
    runs: t,
  };
  console.log(`compute only: cpu ${result.cpu_s_probe1.toFixed(2)} → ${result.cpu_s_probe2.toFixed(2)} s (×${result.cpu_ratio.toFixed(2)}), wall ${result.wall_s_probe1.toFixed(2)} → ${result.wall_s_probe2.toFixed(2)} s (×${result.wall_ratio.toFixed(2)})`);
  return result;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  mkdirSync(OUT, { recursive: true });
  const loadBefore = loadavg()[0]!;
  const results = [];
  if (opts.only.includes('a')) results.push(await benchDataSet(ensureDataA(opts), opts));
  if (opts.only.includes('b')) results.push(await benchDataSet(await ensureDataB(opts), opts));
  const machine = { cpu: cpus()[0]?.model ?? '?', logicalCpus: cpus().length, node: process.version, loadBefore, loadAfter: loadavg()[0]! };
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const md = [
    `| data | k | pairs (sample ${results[0]?.sample ?? '?'}) | recall probe 1 | recall probe 2 (margin ${opts.probeMargin}) | duplicates p1 → p2 | clips probed | pairs × | pairwise step s p1 → p2 (median) | step × median / min | assign+pairwise × median / min | compute only × cpu / wall (min) |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.data} | ${r.clusters} | ${r.pairs} | ${pct(r.recall_probe1)} (${r.missed_probe1} missed) | ${pct(r.recall_probe2)} (${r.missed_probe2} missed) | ${r.duplicates_probe1} → ${r.duplicates_probe2} | ${r.probed_clips} | ${r.pairs_ratio.toFixed(2)} | ${r.pairwise_s_probe1.toFixed(2)} → ${r.pairwise_s_probe2.toFixed(2)} | ${r.pairwise_ratio.toFixed(2)} / ${r.pairwise_ratio_min.toFixed(2)} | ${r.assign_pairwise_ratio.toFixed(2)} / ${r.assign_pairwise_ratio_min.toFixed(2)} | ${r.compute.cpu_ratio.toFixed(2)} / ${r.compute.wall_ratio.toFixed(2)} |`,
    ),
    '',
    ...results.flatMap((r) => [
      `What-if on data ${r.data} (from the probe 1 run's recall: same centroids, same sample):`,
      '',
      '| margin | recall | clips probed | est. pairs × |',
      '|---|---|---|---|',
      ...(r.what_if as { probe_margin: number; recall: number; probed_fraction: number; est_pairs_ratio: number }[]).map(
        (w) => `| ${w.probe_margin} | ${pct(w.recall)} | ${pct(w.probed_fraction)} | ${w.est_pairs_ratio.toFixed(2)} |`,
      ),
      '',
    ]),
  ].join('\n');
  writeFileSync(path.join(ROOT, 'bench', 'results', 'probe.json'), JSON.stringify({ date: new Date().toISOString(), machine, options: opts, results }, null, 2) + '\n');
  writeFileSync(path.join(ROOT, 'bench', 'results', 'probe.md'), md + '\n');
  console.log(`\n${md}\nmachine: ${JSON.stringify(machine)}\nwritten bench/results/probe.json, bench/results/probe.md`);
}

await main();
