import type { RowSource } from '../assign/index.js';
import type { SimilarityKernel } from '../kernels/types.js';
import type { Progress } from '../runtime/progress.js';
import type { RunnableContext } from '../runtime/runner.js';
import type { RunConfig } from '../shared/config.js';
import type { IdType, RankSpec } from '../shared/types.js';
import type { Store } from '../store/index.js';

/** Everything the batch steps share. Paths: `staging` becomes the output when complete. */
export interface BatchContext extends RunnableContext {
  readonly config: RunConfig;
  readonly kernel: SimilarityKernel;
  readonly progress: Progress;
  readonly rankSpec: RankSpec;
  /** Final output folder. */
  readonly outputDir: string;
  /** Hidden folder inside the output where outputs are built before being renamed into place. */
  readonly stagingDir: string;
  /** Scratch space (spilled embeddings, row parts), removed at the end. */
  readonly workDir: string;
  store: Store | null;
  files: string[];
  idType: IdType;
  metadataTypes: Record<string, unknown>;
  dim: number;
  rows: number;
  rejectedRows: number;
  /** The normalized embeddings, rows in input order (in memory within the budget, else on disk). */
  embeddings: RowSource | null;
  centroids: Float32Array | null;
  clusters: number;
  kmeans: { iterations: number; inertia: number; converged: boolean } | null;
  clusterSizes: number[];
  duplicates: number | null;
  pairsCompared: number;
  /** Multi-probe figures for summary.json (null with --probe 1). */
  probe: ProbeStats | null;
}

/** What multi-probe cost, for summary.json's `probe`. */
export interface ProbeStats {
  readonly probe: number;
  readonly probe_margin: number;
  /** Clips also compared in their second-nearest cluster. */
  readonly probed_clips: number;
  /** Pairs a --probe 1 run compares on the same clusters (own clusters only). */
  readonly single_probe_pairs: number;
  /** pairs_compared − single_probe_pairs. */
  readonly extra_pairs: number;
  /** pairs_compared / single_probe_pairs: the expected pairwise time ratio against --probe 1. */
  readonly pairs_ratio: number;
  /** Wall time of the pairwise step (s), to set against a --probe 1 run's `timings.pairwise`. */
  readonly pairwise_seconds: number;
}
