/**
 * Inspect a finished run to choose eps by looking: everything is read from the run's
 * `semdedup.duckdb` with SQL (no recompute): the `cosine_sim_score` histogram, duplicates and the
 * fraction of clips kept for a grid of eps values, cluster sizes, the clusters with the most
 * duplicates and a sample of duplicate pairs with their metadata.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openRunStore } from '../identify/index.js';
import type { RecallResult } from '../recall/index.js';
import { InputError } from '../shared/errors.js';
import { sqlIdent, type Store } from '../store/index.js';

/** eps values tabulated when `--eps-grid` is not given. */
export const DEFAULT_EPS_GRID: readonly number[] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3];
export const DEFAULT_INSPECT_EPS = 0.01;
export const DEFAULT_HISTOGRAM_BINS = 50;
export const DEFAULT_TOP_CLUSTERS = 10;
export const DEFAULT_SAMPLE_PAIRS = 10;

/** Columns of `clips` that semdedup adds; every other column besides `id` is the clip's metadata. */
const RUN_COLUMNS = new Set(['row', 'id', 'rank_hash', 'centroid', 'l2_dist_to_cent', 'cosine_dist_to_cent', 'rank_pos', 'global_pos', 'probe_centroid']);

export interface InspectOptions {
  /** eps for the top clusters, the sample pairs and the threshold mark (default 0.01). */
  readonly eps?: number;
  readonly epsGrid?: readonly number[];
  /** Histogram bins over [0, 1] (default 50). */
  readonly bins?: number;
  readonly top?: number;
  readonly samples?: number;
}

export interface HistogramBin {
  readonly lo: number;
  readonly hi: number;
  readonly count: number;
}

export interface EpsRow {
  readonly eps: number;
  /** cosine_sim_score threshold, 1 - eps: duplicates are scores >= threshold. */
  readonly threshold: number;
  readonly duplicates: number;
  readonly kept: number;
  /** kept / rows: the fraction of the data set left after removing the duplicates. */
  readonly fraction: number;
}

export interface ClusterRow {
  readonly centroid: number;
  readonly size: number;
  /** Duplicates in this cluster at the report's eps. */
  readonly duplicates: number;
}

export interface ClusterSizes {
  readonly clusters: number;
  readonly non_empty: number;
  readonly min: number;
  readonly median: number;
  readonly mean: number;
  readonly max: number;
  /** Distribution of cluster sizes (10 equal-width bins over [min, max]). */
  readonly histogram: readonly HistogramBin[];
  /** Every cluster (by centroid), with its duplicates at the report's eps. */
  readonly per_cluster: readonly ClusterRow[];
}

export interface TopCluster extends ClusterRow {
  /** duplicates / size. */
  readonly duplicate_fraction: number;
}

export type JsonValue = string | number | boolean | null;

export interface SamplePair {
  readonly id: JsonValue;
  readonly max_id: JsonValue;
  readonly cosine_sim_score: number;
  readonly centroid: number;
  readonly metadata: Readonly<Record<string, JsonValue>>;
  readonly max_id_metadata: Readonly<Record<string, JsonValue>>;
}

export interface InspectReport {
  readonly output: string;
  /** Clips in the run (rows of `pairwise`). */
  readonly rows: number;
  readonly clusters: number;
  /** eps used for `top_clusters`, `sample_pairs` and `cluster_sizes.per_cluster[].duplicates`. */
  readonly eps: number;
  /** What the run (or the last `identify`) recorded in summary.json; probe fields only with --probe 2. */
  readonly run: { readonly eps: number | null; readonly duplicates: number | null; readonly probe?: number; readonly probe_margin?: number };
  /** Pair recall recorded by `semdedup recall` (null until it has run). */
  readonly recall?: RecallResult | null;
  readonly metadata_columns: readonly string[];
  readonly histogram: readonly HistogramBin[];
  readonly eps_table: readonly EpsRow[];
  readonly cluster_sizes: ClusterSizes;
  readonly top_clusters: readonly TopCluster[];
  readonly sample_pairs: readonly SamplePair[];
}

/** The duplicate condition, exactly as `writeDuplicates` writes it (double against the float32 score). */
export function duplicateCondition(eps: number): string {
  return `cosine_sim_score >= 1 - ${epsLiteral(eps)}::DOUBLE`;
}

function epsLiteral(eps: number): string {
  if (!Number.isFinite(eps)) throw new InputError(`eps must be a finite number, got ${eps}`, { context: { field: 'eps' } });
  return String(eps);
}

/** Gather the whole report from `outputDir/semdedup.duckdb`. */
export async function inspectRun(outputDir: string, options: InspectOptions = {}): Promise<InspectReport> {
  const eps = options.eps ?? DEFAULT_INSPECT_EPS;
  const grid = [...new Set(options.epsGrid ?? DEFAULT_EPS_GRID)].sort((a, b) => a - b);
  const bins = options.bins ?? DEFAULT_HISTOGRAM_BINS;
  const top = options.top ?? DEFAULT_TOP_CLUSTERS;
  const samples = options.samples ?? DEFAULT_SAMPLE_PAIRS;
  if (!Number.isInteger(bins) || bins < 1 || bins > 1000) throw new InputError(`--bins must be an integer in [1, 1000], got ${bins}`, { context: { field: 'bins' } });
  if (grid.length === 0) throw new InputError('--eps-grid needs at least one value', { context: { field: 'eps-grid' } });

  const { run, recall } = await readRunSummary(outputDir);
  const store = await openRunStore(outputDir);
  try {
    const [counts] = await store.rows('SELECT count(*)::BIGINT AS n FROM pairwise');
    const rows = Number(counts!.n);
    const clusterRows = await clusterTable(store, eps);
    const metadataColumns = (await store.rows('DESCRIBE clips')).map((r) => r.column_name as string).filter((c) => !RUN_COLUMNS.has(c));
    return {
      output: outputDir,
      rows,
      clusters: clusterRows.length,
      eps,
      run,
      metadata_columns: metadataColumns,
      histogram: await scoreHistogram(store, bins),
      eps_table: await epsTable(store, grid, rows),
      cluster_sizes: clusterSizes(clusterRows),
      top_clusters: clusterRows
        .filter((c) => c.duplicates > 0)
        .sort((a, b) => b.duplicates - a.duplicates || b.size - a.size || a.centroid - b.centroid)
        .slice(0, top)
        .map((c) => ({ ...c, duplicate_fraction: c.size > 0 ? c.duplicates / c.size : 0 })),
      sample_pairs: await samplePairs(store, eps, samples, metadataColumns),
      recall,
    };
  } finally {
    store.close();
  }
}

async function readRunSummary(outputDir: string): Promise<{ run: InspectReport['run']; recall: RecallResult | null }> {
  const none = { run: { eps: null, duplicates: null }, recall: null };
  const path = join(outputDir, 'summary.json');
  if (!existsSync(path)) return none;
  try {
    const s = JSON.parse(await readFile(path, 'utf8')) as { duplicates?: unknown; config?: { eps?: unknown }; probe?: { probe?: unknown; probe_margin?: unknown }; recall?: unknown };
    const probe = typeof s.probe?.probe === 'number' && typeof s.probe.probe_margin === 'number' ? { probe: s.probe.probe, probe_margin: s.probe.probe_margin } : {};
    return {
      run: {
        eps: typeof s.config?.eps === 'number' ? s.config.eps : null,
        duplicates: typeof s.duplicates === 'number' ? s.duplicates : null,
        ...probe,
      },
      recall: s.recall && typeof s.recall === 'object' && typeof (s.recall as RecallResult).recall === 'number' ? (s.recall as RecallResult) : null,
    };
  } catch {
    return none;
  }
}

/** `bins` equal bins over [0, 1]; a score of exactly 1 (or a float32 hair above) counts in the last. */
async function scoreHistogram(store: Store, bins: number): Promise<HistogramBin[]> {
  const found = await store.rows(
    `SELECT least(greatest(floor(cosine_sim_score::DOUBLE * ${bins}), 0), ${bins - 1})::INTEGER AS bin, count(*)::BIGINT AS n
       FROM pairwise GROUP BY bin`,
  );
  const counts = new Array<number>(bins).fill(0);
  for (const r of found) counts[r.bin as number] = Number(r.n);
  return counts.map((count, i) => ({ lo: round(i / bins), hi: round((i + 1) / bins), count }));
}

/** Duplicates for every eps of the grid in one scan of `pairwise`. */
async function epsTable(store: Store, grid: readonly number[], rows: number): Promise<EpsRow[]> {
  const filters = grid.map((e, i) => `count(*) FILTER (WHERE ${duplicateCondition(e)})::BIGINT AS e${i}`).join(', ');
  const [r] = await store.rows(`SELECT ${filters} FROM pairwise`);
  return grid.map((eps, i) => {
    const duplicates = Number(r![`e${i}`]);
    const kept = rows - duplicates;
    return { eps, threshold: round(1 - eps), duplicates, kept, fraction: rows > 0 ? kept / rows : 1 };
  });
}

/** Every cluster of the run (empty ones included, from `centroids`) with its size and duplicates at eps. */
async function clusterTable(store: Store, eps: number): Promise<ClusterRow[]> {
  const hasCentroids = (await store.rows("SELECT 1 FROM duckdb_tables() WHERE database_name = 'run' AND table_name = 'centroids'")).length > 0;
  const all = hasCentroids ? 'SELECT centroid FROM centroids UNION SELECT DISTINCT centroid FROM pairwise' : 'SELECT DISTINCT centroid FROM pairwise';
  const found = await store.rows(
    `SELECT a.centroid::INTEGER AS centroid, count(p.centroid)::BIGINT AS size,
            count(*) FILTER (WHERE ${duplicateCondition(eps)})::BIGINT AS duplicates
       FROM (${all}) a LEFT JOIN pairwise p ON p.centroid = a.centroid
       GROUP BY a.centroid ORDER BY a.centroid`,
  );
  return found.map((r) => ({ centroid: r.centroid as number, size: Number(r.size), duplicates: Number(r.duplicates) }));
}

function clusterSizes(clusters: readonly ClusterRow[]): ClusterSizes {
  const sizes = clusters.map((c) => c.size).sort((a, b) => a - b);
  const n = sizes.length;
  const min = n ? sizes[0]! : 0;
  const max = n ? sizes[n - 1]! : 0;
  const median = n === 0 ? 0 : n % 2 ? sizes[(n - 1) / 2]! : (sizes[n / 2 - 1]! + sizes[n / 2]!) / 2;
  const mean = n ? sizes.reduce((s, x) => s + x, 0) / n : 0;
  return {
    clusters: n,
    non_empty: sizes.filter((s) => s > 0).length,
    min,
    median,
    mean: round(mean),
    max,
    histogram: sizeHistogram(sizes, 10),
    per_cluster: clusters,
  };
}

/** Equal-width bins over [min, max] of integer sizes (the last bin includes max). */
export function sizeHistogram(sizes: readonly number[], bins: number): HistogramBin[] {
  if (sizes.length === 0) return [];
  const min = Math.min(...sizes);
  const max = Math.max(...sizes);
  const width = Math.max(1, Math.ceil((max - min + 1) / bins));
  const used = Math.ceil((max - min + 1) / width);
  const counts = new Array<number>(used).fill(0);
  for (const s of sizes) counts[Math.min(used - 1, Math.floor((s - min) / width))]!++;
  return counts.map((count, i) => ({ lo: min + i * width, hi: min + (i + 1) * width - 1, count }));
}

/**
 * Up to `n` duplicate pairs at eps, spread evenly over the duplicates ordered by score (from the
 * closest copies down to the borderline ones just above the threshold), with both clips' metadata.
 */
async function samplePairs(store: Store, eps: number, n: number, metadataColumns: readonly string[]): Promise<SamplePair[]> {
  if (n <= 0) return [];
  const [c] = await store.rows(`SELECT count(*)::BIGINT AS n FROM pairwise WHERE ${duplicateCondition(eps)}`);
  const total = Number(c!.n);
  if (total === 0) return [];
  const m = Math.min(n, total);
  const picks = new Set<number>();
  for (let i = 0; i < m; i++) picks.add(m === 1 ? 1 : 1 + Math.round((i * (total - 1)) / (m - 1)));
  const meta = (alias: string, prefix: string) => metadataColumns.map((m) => `${alias}.${sqlIdent(m)} AS ${sqlIdent(prefix + m)}`).join(', ');
  const metaSelect = metadataColumns.length ? `, ${meta('a', 'a.')}, ${meta('b', 'b.')}` : '';
  const found = await store.rows(
    `WITH d AS (
       SELECT id, max_id, cosine_sim_score, centroid,
              row_number() OVER (ORDER BY cosine_sim_score DESC, id) AS rn
         FROM pairwise WHERE ${duplicateCondition(eps)})
     SELECT d.id, d.max_id, d.cosine_sim_score, d.centroid${metaSelect}
       FROM d LEFT JOIN clips a ON a.id = d.id LEFT JOIN clips b ON b.id = d.max_id
      WHERE d.rn IN (${[...picks].join(', ')})
      ORDER BY d.rn`,
  );
  return found.map((r) => ({
    id: jsonValue(r.id),
    max_id: jsonValue(r.max_id),
    cosine_sim_score: r.cosine_sim_score as number,
    centroid: r.centroid as number,
    metadata: Object.fromEntries(metadataColumns.map((m) => [m, jsonValue(r[`a.${m}`])])),
    max_id_metadata: Object.fromEntries(metadataColumns.map((m) => [m, jsonValue(r[`b.${m}`])])),
  }));
}

/** A DuckDB JS value as JSON: bigints as numbers when exact (else strings), dates as ISO text. */
export function jsonValue(v: unknown): JsonValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
}

function round(x: number, digits = 10): number {
  return Number(x.toFixed(digits));
}

// ---------------------------------------------------------------------------------------------
// Human output

/** Text tables for the terminal. */
export function formatInspectText(r: InspectReport): string {
  const out: string[] = [];
  const runEps = r.run.eps === null ? 'run without eps' : `run eps ${r.run.eps}: ${r.run.duplicates ?? '?'} duplicates`;
  out.push(`semdedup inspect: ${r.output} — ${r.rows} clips in ${r.clusters} clusters (${runEps})`, '');

  out.push(`cosine_sim_score histogram (${r.histogram.length} bins over [0, 1]; empty bins omitted; bar length on a log scale)`);
  const maxLog = Math.log10(1 + Math.max(1, ...r.histogram.map((b) => b.count)));
  const countWidth = Math.max(5, ...r.histogram.map((b) => String(b.count).length));
  r.histogram.forEach((b, i) => {
    if (b.count === 0) return;
    const close = i === r.histogram.length - 1 ? ']' : ')';
    const bar = '#'.repeat(Math.max(1, Math.round((40 * Math.log10(1 + b.count)) / maxLog)));
    out.push(`  [${b.lo.toFixed(2)}, ${b.hi.toFixed(2)}${close}  ${String(b.count).padStart(countWidth)}  ${bar}`);
  });
  out.push('');

  out.push('eps table (duplicates: cosine_sim_score >= 1 - eps; fraction = kept / rows)');
  out.push(
    ...table(
      ['eps', 'threshold', 'duplicates', 'kept', 'fraction'],
      r.eps_table.map((e) => [String(e.eps), e.threshold.toFixed(4), String(e.duplicates), String(e.kept), e.fraction.toFixed(4)]),
    ),
    '',
  );

  const cs = r.cluster_sizes;
  out.push(`cluster sizes: ${cs.clusters} clusters (${cs.non_empty} non-empty), min ${cs.min}, median ${cs.median}, mean ${cs.mean.toFixed(1)}, max ${cs.max}`);
  out.push(...table(['size from', 'to', 'clusters'], cs.histogram.map((b) => [String(b.lo), String(b.hi), String(b.count)])), '');

  out.push(`top clusters by duplicates at eps ${r.eps}`);
  if (r.top_clusters.length === 0) out.push('  (no duplicates at this eps)');
  else {
    out.push(
      ...table(
        ['centroid', 'size', 'duplicates', 'dup fraction'],
        r.top_clusters.map((c) => [String(c.centroid), String(c.size), String(c.duplicates), c.duplicate_fraction.toFixed(4)]),
      ),
    );
  }
  out.push('');

  out.push(...formatRecallLines(r), '');

  out.push(`sample duplicate pairs at eps ${r.eps} (spread from the closest copies to the threshold; metadata: clip / max_id)`);
  if (r.sample_pairs.length === 0) out.push('  (no duplicates at this eps)');
  else {
    out.push(
      ...table(
        ['id', 'max_id', 'score', 'centroid', ...r.metadata_columns],
        r.sample_pairs.map((p) => [
          String(p.id),
          String(p.max_id),
          p.cosine_sim_score.toFixed(6),
          String(p.centroid),
          ...r.metadata_columns.map((m) => `${text(p.metadata[m])} / ${text(p.max_id_metadata[m])}`),
        ]),
      ),
    );
  }
  return out.join('\n') + '\n';
}

/** The pair recall section: `semdedup recall`'s result, or how to get one. */
function formatRecallLines(r: InspectReport): string[] {
  const probe = r.run.probe && r.run.probe > 1 ? `--probe ${r.run.probe} --probe-margin ${r.run.probe_margin}` : '--probe 1';
  const c = r.recall;
  if (!c) return [`pair recall (${probe}): not measured; run \`semdedup recall --output ${r.output}\``];
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  return [
    `pair recall (${probe}): ${pct(c.recall)} of ${c.pairs} pairs with cos >= ${Number(c.threshold.toFixed(12))} (eps ${c.eps}) touching ${c.sample} sampled clips were compared; ${c.missed} missed (same cluster ${c.covered_same_cluster}, by probing ${c.covered_by_probe})`,
    ...table(
      ['what-if margin', 'recall', 'probed', 'est. pairs ×'],
      c.what_if.map((w) => [String(w.probe_margin), pct(w.recall), pct(w.probed_fraction), w.est_pairs_ratio.toFixed(2)]),
    ),
  ];
}

function text(v: JsonValue | undefined): string {
  return v === null || v === undefined ? '∅' : String(v);
}

/** Right-aligned columns (left-aligned when a column holds text). */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = header.map((_, i) => rows.every((r) => /^-?[\d.e+-]+$/.test(r[i]!)));
  const line = (cells: readonly string[]) => '  ' + cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}
