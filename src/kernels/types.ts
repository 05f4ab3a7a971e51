/**
 * The compute interface every backend implements (same file set per backend: `index.ts`).
 * All matrices are row-major float32. Results must agree with the `js` backend within 1e-5.
 */
export type BackendName = 'cpu' | 'gpu' | 'js';

export interface RankedMaxInput {
  /** m × dim query rows. */
  readonly queries: Float32Array;
  /** Rank position of each query row within its cluster. */
  readonly queryPos: Int32Array;
  /** n × dim candidate rows, sorted by `candidatePos` ascending. */
  readonly candidates: Float32Array;
  /** Rank position of each candidate, strictly ascending. */
  readonly candidatePos: Int32Array;
  readonly dim: number;
}

export interface RankedMaxResult {
  /** Per query: max dot product over candidates ranked before it (-Infinity when there is none). */
  readonly score: Float32Array;
  /** Per query: index into candidates of the first-ranked candidate reaching `score` (-1 when none). */
  readonly index: Int32Array;
}

export interface NearestCentroidResult {
  /** Index of the nearest centroid (lowest index among equals). */
  readonly index: Int32Array;
  /** Squared Euclidean distance to it. */
  readonly dist2: Float32Array;
}

export interface NearestCentroidSumsResult extends NearestCentroidResult {
  /** k × dim: per centroid, the sum of the rows whose `index` it is (float32). */
  readonly sums: Float32Array;
}

export interface CrossRankedMaxInput {
  /** m × dim rows of new clips, in rank order. */
  readonly queries: Float32Array;
  /** Rank position of each query, strictly ascending. */
  readonly queryPos: Int32Array;
  /** n × dim rows of a whole cluster, queries included, in any order (a cluster stores rows as they arrive). */
  readonly rows: Float32Array;
  /** Rank position of each row, all distinct; a query's own row has the query's position. */
  readonly rowPos: Int32Array;
  /**
   * Optional: the rows in rank order (`rowOrder[rowPos[r]] === r`, so positions are 0..n-1). With
   * it a backend can walk each query's earlier and later rows as two runs instead of testing every
   * row's position (a cluster keeps this permutation anyway).
   */
  readonly rowOrder?: Int32Array;
  /** Optional: `hashRows` of each row (first-identical-row.ts), kept by a caller that reuses rows. */
  readonly rowHash?: Int32Array;
  readonly dim: number;
}

export interface CrossRankedMaxResult {
  /** Per query: max over rows ranked before it, and the first-ranked row reaching it (its index in `rows`; -inf / -1: none). */
  readonly forQueries: RankedMaxResult;
  /** Per row: max over queries ranked before it, and the first such query (-inf / -1: none). */
  readonly forRows: RankedMaxResult;
}

/** Pairs whose similarity reaches a threshold, sorted by query row, then candidate row. */
export interface PairsAboveResult {
  /** Row of `queries` of each pair. */
  readonly query: Int32Array;
  /** Row of `candidates` of each pair. */
  readonly candidate: Int32Array;
  /** Its dot product (float32), >= the threshold. */
  readonly score: Float32Array;
}

export interface SimilarityKernel {
  readonly name: BackendName;
  /** Human-readable description of what actually runs (e.g. "onnxruntime MLAS, 2 threads"). */
  readonly description: string;
  /**
   * For each query, the max similarity over candidates ranked strictly before it, and the
   * first-ranked candidate that reaches it. Covers the batch pairwise block (queries = a block of
   * a ranked cluster, candidates = the rows before the block's end) and the streaming update
   * (new clips against a cluster's state, both directions).
   */
  rankedMax(input: RankedMaxInput): Promise<RankedMaxResult>;
  /**
   * Optional (streaming flush): both directions of a flush from one product of the new clips with
   * the cluster's rows — each new clip against the rows ranked before it, and each row against the
   * new clips ranked before it — so every (new, old) pair is computed once, not once per
   * direction. Without it, callers make the two `rankedMax` calls.
   */
  crossRankedMax?(input: CrossRankedMaxInput): Promise<CrossRankedMaxResult>;
  /** Nearest centroid of each of the n rows of x (n × dim) among k centroids (k × dim). */
  nearestCentroid(x: Float32Array, centroids: Float32Array, dim: number): Promise<NearestCentroidResult>;
  /**
   * Optional (a Lloyd's iteration of k-means): `nearestCentroid` plus the per-centroid sums of the
   * rows assigned, in one pass over x. `rowNorm2` holds |x|² of each row (k-means computes it once
   * per fit instead of once per iteration); dist2 = max(min_c(|c|² − 2x·c) + rowNorm2, 0) in float32.
   * Without it, k-means sums the rows itself.
   */
  nearestCentroidSums?(x: Float32Array, centroids: Float32Array, dim: number, rowNorm2: Float32Array): Promise<NearestCentroidSumsResult>;
  /**
   * Optional (k-means++ seeding): x·v for each row of x (n × dim) against one vector v (dim), in
   * float32. A matrix-vector product: memory-bound, so a backend helps only if it streams x faster
   * than a JS loop. Without it, k-means runs the JS loop.
   */
  rowDots?(x: Float32Array, v: Float32Array, dim: number): Promise<Float32Array>;
  /**
   * Optional (recall measurement): every (query, candidate) whose dot product is >= `threshold`
   * (the float32 score compared in double, like the duplicates' WHERE). Backends without it are
   * served by the js implementation through `similarityPairsAbove` in kernels/index.ts.
   */
  similarityPairsAbove?(queries: Float32Array, candidates: Float32Array, dim: number, threshold: number): Promise<PairsAboveResult>;
  close(): Promise<void>;
}
