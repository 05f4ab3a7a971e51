import type { SimilarityKernel } from '../kernels/types.js';
import type { Progress } from '../runtime/progress.js';
import type { RunnableContext } from '../runtime/runner.js';
import type { ReplayConfig } from '../shared/config.js';
import type { IdType } from '../shared/types.js';
import type { KafkaSink } from '../sinks/kafka/index.js';
import type { DedupEngine } from '../state/dedup-engine.js';
import type { Store } from '../store/index.js';
import type { StateStore } from '../store/state-store.js';

export interface ReplayContext extends RunnableContext {
  readonly config: ReplayConfig;
  readonly kernel: SimilarityKernel;
  readonly progress: Progress;
  readonly outputDir: string;
  readonly stagingDir: string;
  readonly workDir: string;
  centroids: Float32Array | null;
  clusters: number;
  dim: number;
  engine: DedupEngine | null;
  stateStore: StateStore | null;
  store: Store | null;
  sink: KafkaSink | null;
  files: string[];
  idType: IdType;
  metadataTypes: Record<string, unknown>;
  rows: number;
  rejectedRows: number;
  verdictsPublished: number;
  duplicates: number | null;
}
