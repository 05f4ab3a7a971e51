import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pairwiseClusterScores, ProbedScores, rankedPairsCompared, rankedSetMax } from '../pairwise/index.js';
import type { Logger } from '../runtime/logging.js';
import { invariant } from '../shared/errors.js';
import type { MetadataValue } from '../shared/types.js';
import { writeParquetFast } from '../sinks/plain-parquet.js';
import { writeKmeansResults, writePairwiseResults } from '../sinks/nemo-layout.js';
import { sqlIdent } from '../store/index.js';
import type { BatchContext } from './context.js';

/**
 * For each cluster in rank order: write kmeans_results/centroid=K (the clips with their
 * normalized embeddings and distances) and pairwise_results/cluster_K.parquet (max similarity to
 * any clip ranked before, NeMo semantics), one cluster in memory at a time. With --probe 2 the
 * scores come from `pairwiseProbedClusters` instead.
 */
export async function pairwiseAllClusters(ctx: BatchContext, log: Logger): Promise<void> {
  if (ctx.config.probe > 1) return pairwiseProbedClusters(ctx, log);
  const source = ctx.embeddings!;
  const types = { idType: ctx.idType, metadataTypes: ctx.metadataTypes };
  await mkdir(join(ctx.stagingDir, 'pairwise_results'), { recursive: true });
  ctx.progress.start('pairwise', ctx.rows);
  // The next cluster's rows are fetched (DuckDB, disk) while this one is in the kernel, and its
  // kmeans_results file is written while the kernel runs: I/O hides behind compute.
  const load = (k: number) => {
    const loaded = readOwnClips(ctx, k).then(async (own) => ({ k, own, embeddings: await source.readRows(own.rows) }));
    loaded.catch(() => undefined); // awaited later; a failure surfaces there, not as unhandled
    return loaded;
  };
  const nonEmpty = [...ctx.clusterSizes.keys()].filter((k) => ctx.clusterSizes[k]! > 0);
  let next = nonEmpty.length > 0 ? load(nonEmpty[0]!) : null;
  for (let i = 0; i < nonEmpty.length; i++) {
    const { k, own, embeddings } = await next!;
    next = i + 1 < nonEmpty.length ? load(nonEmpty[i + 1]!) : null;
    const kmeansWritten = writeClusterKmeansResults(ctx, k, own, embeddings);
    kmeansWritten.catch(() => undefined); // awaited below
    const { score, maxIndex, pairs } = await pairwiseClusterScores(ctx.kernel, embeddings, ctx.dim, ctx.config.pairwiseBatchSize);
    ctx.pairsCompared += pairs;
    await writePairwiseResults(ctx.stagingDir, k, own.ids, Array.from(maxIndex, (j) => own.ids[j]!), score, types, writeParquetFast);
    await kmeansWritten;
    ctx.progress.increment(own.rows.length);
  }
  ctx.progress.stop();
  log.info({ clusters: ctx.clusterSizes.filter((n) => n > 0).length, pairs: ctx.pairsCompared, backend: ctx.kernel.name }, 'pairwise done');
}

interface OwnClips {
  readonly rows: Int32Array;
  readonly ids: string[];
  readonly globalPos: Int32Array;
  readonly cols: Record<string, unknown[]>;
}

/** One cluster's own clips in rank order, with the columns of `clips` the outputs need. */
async function readOwnClips(ctx: BatchContext, k: number): Promise<OwnClips> {
  // Only what kmeans_results and the pairwise need: every column is converted to JS values.
  const columns = ['row', 'id', 'global_pos', 'l2_dist_to_cent', 'cosine_dist_to_cent', ...Object.keys(ctx.metadataTypes)].map(sqlIdent).join(', ');
  const cols = await ctx.store!.columns(`SELECT ${columns} FROM clips WHERE centroid = ${k} ORDER BY rank_pos`);
  return {
    rows: Int32Array.from(cols.row as number[]),
    ids: (cols.id as unknown[]).map((v) => String(v)),
    globalPos: Int32Array.from(cols.global_pos as number[]),
    cols,
  };
}

/**
 * Output files go through the plain Parquet writer (the embeddings' bytes as they are), not
 * parquet-wasm, whose list encoding cost about as much as the pairwise kernel (plain-parquet.ts).
 */
async function writeClusterKmeansResults(ctx: BatchContext, k: number, own: OwnClips, embeddings: Float32Array): Promise<void> {
  const metadata: Record<string, MetadataValue[]> = {};
  for (const name of Object.keys(ctx.metadataTypes)) metadata[name] = own.cols[name] as MetadataValue[];
  await writeKmeansResults(ctx.stagingDir, {
    centroid: k,
    ids: own.ids,
    embeddings,
    dim: ctx.dim,
    metadata,
    l2DistToCent: Float32Array.from(own.cols.l2_dist_to_cent as number[]),
    cosineDistToCent: Float32Array.from(own.cols.cosine_dist_to_cent as number[]),
  }, { idType: ctx.idType, metadataTypes: ctx.metadataTypes }, writeParquetFast);
}

/** Clips probed into one cluster (from their own), ascending by global_pos. */
interface ProbedIn {
  readonly rows: number[];
  readonly ids: string[];
  readonly globalPos: number[];
  readonly owner: number[];
}

/**
 * `--probe 2` (semantics: src/pairwise/probe.ts). Pass 1, per cluster: its compared set (own clips
 * and the clips probed into it, merged by global_pos) runs through the ranked max, and every
 * member's running best is updated, whichever cluster owns it; kmeans_results is written as usual.
 * Pass 2, per cluster: pairwise_results from the final bests (each clip once, in its own cluster).
 * Memory: two numbers per clip plus the probed clips' ids, besides one compared set at a time.
 */
export async function pairwiseProbedClusters(ctx: BatchContext, log: Logger): Promise<void> {
  const started = performance.now();
  const source = ctx.embeddings!;
  const batchSize = ctx.config.pairwiseBatchSize;
  await mkdir(join(ctx.stagingDir, 'pairwise_results'), { recursive: true });

  const probedIn = new Map<number, ProbedIn>();
  const probed = await ctx.store!.columns(
    'SELECT row, id, global_pos, centroid, probe_centroid FROM clips WHERE probe_centroid IS NOT NULL ORDER BY probe_centroid, global_pos',
  );
  // An empty result has no column arrays at all.
  const probedClips = probed.row?.length ?? 0;
  for (let i = 0; i < probedClips; i++) {
    const c = probed.probe_centroid![i] as number;
    let list = probedIn.get(c);
    if (!list) probedIn.set(c, (list = { rows: [], ids: [], globalPos: [], owner: [] }));
    list.rows.push(probed.row![i] as number);
    list.ids.push(String(probed.id![i]));
    list.globalPos.push(probed.global_pos![i] as number);
    list.owner.push(probed.centroid![i] as number);
  }

  const best = new ProbedScores(ctx.rows);
  // max_id of a clip whose best comes from a clip of another cluster: pass 2 reads only the own
  // cluster's ids, so those winners' ids are kept here, by global position.
  const foreignWinnerIds = new Map<number, string>();
  let singleProbePairs = 0;
  ctx.progress.start('pairwise', ctx.rows + probedClips);
  for (let k = 0; k < ctx.clusters; k++) {
    const incoming = probedIn.get(k);
    if (ctx.clusterSizes[k] === 0 && !incoming) continue;
    const own = ctx.clusterSizes[k] === 0 ? null : await readOwnClips(ctx, k);
    const ownEmbeddings = own ? await source.readRows(own.rows) : new Float32Array(0);
    if (own) await writeClusterKmeansResults(ctx, k, own, ownEmbeddings);
    const inEmbeddings = incoming ? await source.readRows(Int32Array.from(incoming.rows)) : new Float32Array(0);
    const set = mergeComparedSet(k, own, ownEmbeddings, incoming, inEmbeddings, ctx.dim);
    const raw = await rankedSetMax(ctx.kernel, set.embeddings, ctx.dim, batchSize);
    ctx.pairsCompared += raw.pairs;
    singleProbePairs += rankedPairsCompared(own?.rows.length ?? 0, batchSize);
    best.foldSet(set.rows, set.globalPos, raw, (i, w) => {
      if (set.owner[w] !== set.owner[i]) foreignWinnerIds.set(set.globalPos[w]!, set.ids[w]!);
    });
    ctx.progress.increment(set.rows.length);
  }

  // Pass 2 reads clusters in slabs of about PASS2_SLAB_ROWS clips (one range scan each: `clips`
  // is stored by centroid), not one query per cluster.
  for (let k0 = 0; k0 < ctx.clusters; ) {
    let k1 = k0;
    let slabRows = 0;
    while (k1 < ctx.clusters && (slabRows === 0 || slabRows + ctx.clusterSizes[k1]! <= PASS2_SLAB_ROWS)) slabRows += ctx.clusterSizes[k1++]!;
    const cols = await ctx.store!.columns(
      `SELECT centroid, row, id, global_pos FROM clips WHERE centroid >= ${k0} AND centroid < ${k1} ORDER BY centroid, rank_pos`,
    );
    let at = 0;
    for (let k = k0; k < k1; k++) {
      const size = ctx.clusterSizes[k]!;
      if (size === 0) continue;
      invariant(cols.centroid![at] === k && cols.centroid![at + size - 1] === k, `pass 2: cluster ${k} is not where its size says`);
      const rows = cols.row!.slice(at, at + size) as number[];
      const ids = (cols.id!.slice(at, at + size) as unknown[]).map((v) => String(v));
      const globalPos = Int32Array.from(cols.global_pos!.slice(at, at + size) as number[]);
      at += size;
      const score = new Float32Array(size);
      const maxIds = ids.map((id, j) => {
        const v = best.verdict(rows[j]!);
        score[j] = v.score;
        if (v.pos < 0) return id;
        // Own clips are in global_pos order: a binary search finds a winner of the same cluster.
        const w = lowerBound(globalPos, v.pos);
        const winner = w < globalPos.length && globalPos[w] === v.pos ? ids[w] : foreignWinnerIds.get(v.pos);
        invariant(winner !== undefined, `no id for the winner at global position ${v.pos} of clip ${id}`);
        return winner;
      });
      await writePairwiseResults(ctx.stagingDir, k, ids, maxIds, score, { idType: ctx.idType, metadataTypes: ctx.metadataTypes }, writeParquetFast);
    }
    k0 = k1;
  }
  ctx.progress.stop();

  const stats = {
    probe: ctx.config.probe,
    probe_margin: ctx.config.probeMargin,
    probed_clips: probedClips,
    single_probe_pairs: singleProbePairs,
    extra_pairs: ctx.pairsCompared - singleProbePairs,
    pairs_ratio: singleProbePairs > 0 ? Math.round((ctx.pairsCompared / singleProbePairs) * 10000) / 10000 : 1,
    pairwise_seconds: Math.round(performance.now() - started) / 1000,
  };
  ctx.probe = stats;
  log.info({ ...stats, pairs: ctx.pairsCompared, backend: ctx.kernel.name }, 'probed pairwise done');
}

/** Clips per pass-2 query of `pairwiseProbedClusters`: ids and positions only, a few MB. */
const PASS2_SLAB_ROWS = 65536;

interface ComparedSet {
  readonly rows: Int32Array;
  readonly globalPos: Int32Array;
  readonly ids: string[];
  /** Own cluster of each member (k for own clips, another for probed-in ones). */
  readonly owner: Int32Array;
  readonly embeddings: Float32Array;
}

/** Own clips (rank order = global_pos order) and probed-in clips merged by global_pos. */
function mergeComparedSet(k: number, own: OwnClips | null, ownEmb: Float32Array, incoming: ProbedIn | undefined, inEmb: Float32Array, dim: number): ComparedSet {
  const a = own?.rows.length ?? 0;
  const b = incoming?.rows.length ?? 0;
  const n = a + b;
  // Nothing probed in: the set is the cluster itself, no copy.
  if (b === 0) return { rows: own!.rows, globalPos: own!.globalPos, ids: own!.ids, owner: new Int32Array(a).fill(k), embeddings: ownEmb };
  const set = {
    rows: new Int32Array(n),
    globalPos: new Int32Array(n),
    ids: new Array<string>(n),
    owner: new Int32Array(n),
    embeddings: new Float32Array(n * dim),
  };
  let i = 0;
  let j = 0;
  for (let t = 0; t < n; t++) {
    const takeOwn = j >= b || (i < a && own!.globalPos[i]! < incoming!.globalPos[j]!);
    if (takeOwn) {
      set.rows[t] = own!.rows[i]!;
      set.globalPos[t] = own!.globalPos[i]!;
      set.ids[t] = own!.ids[i]!;
      set.owner[t] = k;
      set.embeddings.set(ownEmb.subarray(i * dim, (i + 1) * dim), t * dim);
      i++;
    } else {
      set.rows[t] = incoming!.rows[j]!;
      set.globalPos[t] = incoming!.globalPos[j]!;
      set.ids[t] = incoming!.ids[j]!;
      set.owner[t] = incoming!.owner[j]!;
      set.embeddings.set(inEmb.subarray(j * dim, (j + 1) * dim), t * dim);
      j++;
    }
  }
  return set;
}

function lowerBound(sorted: Int32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
