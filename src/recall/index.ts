/**
 * Pair recall of a run's clustering (`semdedup recall`): how many of the near-duplicate pairs that
 * exist in the data the run actually compared. Cluster-then-compare only compares clips that share
 * a compared set (the same cluster, or with --probe 2 one of each other's probed clusters), so a
 * pair straddling a cluster boundary is never scored. This measures it against exact brute force:
 *
 * - sample N clips (seeded), compare each with ALL clips (exact cosine on the run's normalized
 *   embeddings: kmeans_results, or the input normalized the same way), keep every pair with
 *   cos >= 1 − eps; a pair of two sampled clips counts once;
 * - a pair is covered when its clips share a compared set; recall = covered / pairs (1 when there
 *   is no pair);
 * - what-if: the coverage a `--probe 2 --probe-margin m` run on the same centroids would have, for
 *   a grid of margins, with the share of clips it would probe and an estimate of its pairwise cost.
 *
 * The result goes into the run's summary.json as `recall` (and `semdedup inspect` shows it).
 */
import { rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { assignToCentroids, createRng, sampleSortedIndices, secondNearestCentroids } from '../assign/index.js';
import { loadCentroids } from '../assign/centroids.js';
import { assertRunOutput, openRunStore, readSummary } from '../identify/index.js';
import { createKernel, similarityPairsAbove } from '../kernels/index.js';
import type { BackendName, SimilarityKernel } from '../kernels/types.js';
import type { Logger } from '../runtime/logging.js';
import { InputError } from '../shared/errors.js';
import { readInputSchema, resolveInputFiles } from '../sources/index.js';
import { sqlString, type Store } from '../store/index.js';
import { createValidationState } from '../validate/index.js';
import { forEachValidBatch } from '../validate/read-validated.js';

export const DEFAULT_RECALL_SAMPLE = 2000;
export const DEFAULT_RECALL_EPS = 0.01;
/** Margins of the what-if table when `--margins` is not given. */
export const DEFAULT_WHAT_IF_MARGINS: readonly number[] = [0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05];
/** PRNG stream of the sample, apart from k-means' streams under the same seed. */
const RECALL_STREAM = 7;
/** Ids per lookup query. */
const LOOKUP_CHUNK = 5000;

export interface RecallOptions {
  /** Clips sampled (default 2000; all clips when larger than the run). */
  readonly sample?: number;
  /** Pairs are cos >= 1 − eps (default: the run's eps, else 0.01). */
  readonly eps?: number;
  /** Seed of the sample (default: the run's seed). */
  readonly seed?: number;
  /** Read the embeddings from these inputs (normalized like the run) instead of kmeans_results. */
  readonly input?: readonly string[];
  /** Kernel for the brute force (default: the run's backend). */
  readonly backend?: BackendName;
  readonly margins?: readonly number[];
  readonly logger: Logger;
}

export interface RecallWhatIf {
  readonly probe_margin: number;
  /** Recall a --probe 2 run with this margin would have on the same centroids (same sample). */
  readonly recall: number;
  /** Share of the sampled clips it would probe into their second cluster. */
  readonly probed_fraction: number;
  /**
   * Estimated pairs compared relative to --probe 1: 1 + (probed clips × their second cluster's
   * size) / (single-probe pairs), extrapolated from the sample; probed-with-probed pairs left out.
   */
  readonly est_pairs_ratio: number;
}

export interface RecallResult {
  readonly eps: number;
  /** 1 − eps. */
  readonly threshold: number;
  /** Clips in the run. */
  readonly rows: number;
  /** Clips sampled. */
  readonly sample: number;
  readonly seed: number;
  readonly source: 'kmeans_results' | 'input';
  readonly backend: string;
  /** The run's probe setting (1: own cluster only) and margin (null with probe 1). */
  readonly probe: number;
  readonly probe_margin: number | null;
  /** Pairs with cos >= threshold that touch a sampled clip (each once). */
  readonly pairs: number;
  readonly covered: number;
  /** Covered because both clips are in the same cluster. */
  readonly covered_same_cluster: number;
  /** Covered only through probing. */
  readonly covered_by_probe: number;
  readonly missed: number;
  /** covered / pairs (1 when there is no pair). */
  readonly recall: number;
  readonly what_if: readonly RecallWhatIf[];
  readonly seconds: number;
}

/** What recall needs of each clip involved in a pair. */
interface ClipFacts {
  centroid: number;
  probe: number;
  l2: number;
  /** Nearest centroid other than `centroid`, and the l2 to it (what-if). */
  second: number;
  secondL2: number;
}

/** Measure pair recall of the run in `outputDir` and record it in its summary.json. */
export async function measureRecall(outputDir: string, options: RecallOptions): Promise<RecallResult> {
  const started = performance.now();
  const log = options.logger.child({ step: 'recall' });
  const dir = resolve(outputDir);
  assertRunOutput(outputDir);
  const summaryPath = join(dir, 'summary.json');
  const summary = await readSummary(summaryPath);
  const config = (summary.config ?? {}) as Record<string, unknown>;
  const eps = options.eps ?? (typeof config.eps === 'number' ? config.eps : DEFAULT_RECALL_EPS);
  const seed = options.seed ?? (typeof config.seed === 'number' ? config.seed : 42);
  const probe = typeof config.probe === 'number' ? config.probe : 1;
  const probeMargin = probe > 1 && typeof config.probeMargin === 'number' ? config.probeMargin : null;
  const backend = options.backend ?? (isBackend(config.backend) ? config.backend : 'cpu');
  const sampleSize = options.sample ?? DEFAULT_RECALL_SAMPLE;
  const margins = [...new Set(options.margins ?? DEFAULT_WHAT_IF_MARGINS)].sort((a, b) => a - b);
  if (!Number.isSafeInteger(sampleSize) || sampleSize < 1) throw new InputError(`--sample must be a positive integer, got ${sampleSize}`, { context: { field: 'sample' } });
  if (!(eps >= 0 && eps <= 2)) throw new InputError(`--eps must be in [0, 2], got ${eps}`, { context: { field: 'eps' } });
  const threshold = 1 - eps;

  const { centroids, dim } = loadCentroids(join(dir, 'kmeans_centroids.npy'));
  const source = options.input?.length ? 'input' : 'kmeans_results';
  const files = await resolveInputFiles(options.input?.length ? options.input : [join(dir, 'kmeans_results')]);
  const fields = {
    idField: source === 'input' && typeof config.idField === 'string' ? config.idField : 'id',
    embeddingField: source === 'input' && typeof config.embeddingField === 'string' ? config.embeddingField : 'embedding',
    metadataFields: [] as string[],
  };
  const schema = await readInputSchema(files, fields);
  if (schema.dim !== undefined && schema.dim !== dim) {
    throw new InputError(`embeddings have ${schema.dim} dimensions, the run's centroids ${dim}`, { context: { file: files[0] } });
  }
  const readOptions = { ...fields, batchRows: 16384, schema, reader: 'duckdb' as const, normalize: source === 'input' };
  /** Every clip of the source, one batch at a time (validated; refused rows were not in the run either). */
  const forEachClip = (fn: (ids: string[], embeddings: Float32Array) => Promise<void>) =>
    forEachValidBatch(files, readOptions, createValidationState(dim), (b) => fn(b.ids, b.embeddings));

  const store = await openRunStore(outputDir, ['clips']);
  let kernel: SimilarityKernel | null = null;
  try {
    const [count] = await store.rows('SELECT count(*)::BIGINT AS n FROM clips');
    const rows = Number(count!.n);
    const columns = new Set((await store.rows('DESCRIBE clips')).map((r) => r.column_name as string));
    const probeSql = columns.has('probe_centroid') ? 'coalesce(probe_centroid, -1)' : '-1';
    const factsSql = `id, centroid, ${probeSql} AS probe, l2_dist_to_cent AS l2`;
    const clusterSize = new Map((await store.rows('SELECT centroid, count(*)::BIGINT AS n FROM clips GROUP BY centroid')).map((r) => [r.centroid as number, Number(r.n)]));

    // The sample: positions in (centroid, rank_pos) order, a total order every run output has.
    const m = Math.min(sampleSize, rows);
    const picks = sampleSortedIndices(rows, m, createRng(seed, RECALL_STREAM));
    const sampled = await store.rows(
      `SELECT ${factsSql} FROM (SELECT *, row_number() OVER (ORDER BY centroid, rank_pos) - 1 AS i FROM clips)
        WHERE i IN (SELECT unnest([${Array.from(picks).join(',')}]::BIGINT[])) ORDER BY i`,
    );
    const ids: string[] = sampled.map((r) => String(r.id));
    const index = new Map(ids.map((id, i) => [id, i]));
    const facts: ClipFacts[] = sampled.map(factsOf);

    // Pass 1: the sampled clips' embeddings.
    const queries = new Float32Array(m * dim);
    let found = 0;
    await forEachClip(async (batchIds, embeddings) => {
      batchIds.forEach((id, r) => {
        const i = index.get(id);
        if (i === undefined) return;
        queries.set(embeddings.subarray(r * dim, (r + 1) * dim), i * dim);
        found++;
      });
    });
    if (found < m) {
      const missing = ids.filter((_, i) => isZeroRow(queries, i, dim)).slice(0, 3);
      throw new InputError(`${m - found} sampled clips of the run are not in the ${source} (e.g. ${missing.join(', ')})`, { context: { file: files[0] } });
    }
    kernel = await createKernel(backend, { warn: (msg) => log.warn(msg) });
    await addSecondCentroids(kernel, queries, centroids, dim, facts, 0);

    // Pass 2: every clip against the sample. Partners (clips outside the sample) get an index
    // after the sampled ones; their facts are looked up afterwards.
    const pairs = new IndexPairs();
    const bothSampled = new Set<number>();
    const partnerSecond = new Map<string, { c1: number; l1: number; c2: number; l2: number }>();
    await forEachClip(async (batchIds, embeddings) => {
      const hits = await similarityPairsAbove(kernel!, queries, embeddings, dim, threshold);
      const newPartners: number[] = [];
      for (let t = 0; t < hits.query.length; t++) {
        const q = hits.query[t]!;
        const id = batchIds[hits.candidate[t]!]!;
        let other = index.get(id);
        if (other === q) continue;
        if (other !== undefined && other < m) {
          // Found from both sides (and float rounding may make only one side reach the threshold).
          const key = Math.min(q, other) * m + Math.max(q, other);
          if (bothSampled.has(key)) continue;
          bothSampled.add(key);
        } else if (other === undefined) {
          other = ids.length;
          ids.push(id);
          index.set(id, other);
          newPartners.push(hits.candidate[t]!);
        }
        pairs.push(q, other);
      }
      if (newPartners.length > 0) {
        const rowsOf = Int32Array.from(new Set(newPartners));
        const sub = new Float32Array(rowsOf.length * dim);
        rowsOf.forEach((r, i) => sub.set(embeddings.subarray(r * dim, (r + 1) * dim), i * dim));
        const top = await topTwoCentroids(kernel!, sub, centroids, dim);
        rowsOf.forEach((r, i) => partnerSecond.set(batchIds[r]!, { c1: top.c1[i]!, l1: top.l1[i]!, c2: top.c2[i]!, l2: top.l2[i]! }));
      }
    });
    for (const [i, f] of (await lookupFacts(store, factsSql, ids.slice(m))).entries()) {
      const t = partnerSecond.get(ids[m + i]!)!;
      facts.push(withSecond(f, t.c1, t.l1, t.c2, t.l2));
    }

    let sameCluster = 0;
    let covered = 0;
    pairs.forEach((i, j) => {
      const a = facts[i]!;
      const b = facts[j]!;
      if (a.centroid === b.centroid) sameCluster++;
      if (sharesComparedSet(a.centroid, a.probe, b.centroid, b.probe)) covered++;
    });
    const pairCount = pairs.length;
    let singleProbePairs = 0;
    for (const n of clusterSize.values()) singleProbePairs += (n * (n - 1)) / 2;
    const whatIf = margins.map((margin): RecallWhatIf => {
      const probeOf = (f: ClipFacts) => (f.second >= 0 && f.secondL2 - f.l2 < margin ? f.second : -1);
      let hit = 0;
      pairs.forEach((i, j) => {
        const a = facts[i]!;
        const b = facts[j]!;
        if (sharesComparedSet(a.centroid, probeOf(a), b.centroid, probeOf(b))) hit++;
      });
      let probed = 0;
      let extra = 0;
      for (let i = 0; i < m; i++) {
        const c = probeOf(facts[i]!);
        if (c < 0) continue;
        probed++;
        extra += clusterSize.get(c) ?? 0;
      }
      return {
        probe_margin: margin,
        recall: pairCount > 0 ? hit / pairCount : 1,
        probed_fraction: probed / m,
        est_pairs_ratio: round(singleProbePairs > 0 ? 1 + (extra * (rows / m)) / singleProbePairs : 1, 4),
      };
    });

    const result: RecallResult = {
      eps,
      threshold: 1 - eps,
      rows,
      sample: m,
      seed,
      source,
      backend: kernel.name,
      probe,
      probe_margin: probeMargin,
      pairs: pairCount,
      covered,
      covered_same_cluster: sameCluster,
      covered_by_probe: covered - sameCluster,
      missed: pairCount - covered,
      recall: pairCount > 0 ? covered / pairCount : 1,
      what_if: whatIf,
      seconds: round((performance.now() - started) / 1000, 3),
    };
    await writeSummary(summaryPath, { ...summary, recall: result });
    log.info({ eps, sample: m, pairs: pairCount, covered, recall: result.recall, seconds: result.seconds }, 'pair recall measured');
    return result;
  } finally {
    store.close();
    await kernel?.close();
  }
}

/** Pairs of clip indices, 8 bytes a pair: dense data can have millions of pairs above eps. */
class IndexPairs {
  #a = new Int32Array(4096);
  #b = new Int32Array(4096);
  length = 0;

  push(a: number, b: number): void {
    if (this.length === this.#a.length) {
      const a2 = new Int32Array(this.length * 2);
      const b2 = new Int32Array(this.length * 2);
      a2.set(this.#a);
      b2.set(this.#b);
      this.#a = a2;
      this.#b = b2;
    }
    this.#a[this.length] = a;
    this.#b[this.length] = b;
    this.length++;
  }

  forEach(fn: (a: number, b: number) => void): void {
    for (let p = 0; p < this.length; p++) fn(this.#a[p]!, this.#b[p]!);
  }
}

/** Whether two clips (own cluster, probed cluster or -1) are compared in some cluster's set. */
export function sharesComparedSet(ka: number, pa: number, kb: number, pb: number): boolean {
  return ka === kb || (pa >= 0 && (pa === kb || pa === pb)) || (pb >= 0 && pb === ka);
}

function factsOf(r: Record<string, unknown>): ClipFacts {
  return { centroid: r.centroid as number, probe: r.probe as number, l2: r.l2 as number, second: -1, secondL2: Infinity };
}

/**
 * The second cluster relative to the run's own centroid: the kernel's runner-up when the kernel
 * agrees on the nearest, else the kernel's nearest (only at near-ties of the two).
 */
function withSecond(f: ClipFacts, c1: number, l1: number, c2: number, l2: number): ClipFacts {
  return f.centroid === c1 ? { ...f, second: c2, secondL2: l2 } : { ...f, second: c1, secondL2: l1 };
}

async function topTwoCentroids(kernel: SimilarityKernel, x: Float32Array, centroids: Float32Array, dim: number) {
  const own = await assignToCentroids(x, centroids, dim, kernel);
  const second = await secondNearestCentroids(x, centroids, dim, own.centroid, kernel);
  return { c1: own.centroid, l1: own.l2DistToCent, c2: second.centroid, l2: second.l2DistToCent };
}

async function addSecondCentroids(kernel: SimilarityKernel, x: Float32Array, centroids: Float32Array, dim: number, facts: ClipFacts[], from: number): Promise<void> {
  const top = await topTwoCentroids(kernel, x, centroids, dim);
  for (let i = 0; i < top.c1.length; i++) facts[from + i] = withSecond(facts[from + i]!, top.c1[i]!, top.l1[i]!, top.c2[i]!, top.l2[i]!);
}

/** Facts of the given clips, in the order given; InputError for a clip the run does not have. */
async function lookupFacts(store: Store, factsSql: string, ids: readonly string[]): Promise<ClipFacts[]> {
  const byId = new Map<string, ClipFacts>();
  for (let at = 0; at < ids.length; at += LOOKUP_CHUNK) {
    const chunk = ids.slice(at, at + LOOKUP_CHUNK);
    const found = await store.rows(`SELECT ${factsSql} FROM clips WHERE id::VARCHAR IN (${chunk.map(sqlString).join(', ')})`);
    for (const r of found) byId.set(String(r.id), factsOf(r));
  }
  return ids.map((id) => {
    const f = byId.get(id);
    if (!f) throw new InputError(`clip ${id} of the input is not in the run (was --input the run's input?)`, { context: { field: 'input' } });
    return f;
  });
}

function isZeroRow(x: Float32Array, i: number, dim: number): boolean {
  for (let j = 0; j < dim; j++) if (x[i * dim + j] !== 0) return false;
  return true;
}

function isBackend(v: unknown): v is BackendName {
  return v === 'cpu' || v === 'gpu' || v === 'js';
}

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}


async function writeSummary(path: string, summary: object): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(summary, null, 2) + '\n');
  await rename(tmp, path);
}
