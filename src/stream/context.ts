import type { RunnableContext } from '../runtime/runner.js';
import type { StreamMetrics } from '../runtime/metrics.js';
import type { StreamRunnableContext } from '../runtime/stream-runner.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { DeadLetter, DeadLetterWriter, KafkaSink } from '../sinks/kafka/index.js';
import type { KafkaClient, KafkaCommitPosition, KafkaDecodeOptions, KafkaSource } from '../sources/kafka/index.js';
import type { DedupEngine } from '../state/dedup-engine.js';
import type { Verdict } from '../state/cluster-state.js';
import type { ValidationState } from '../validate/index.js';

/** Counters of one `semdedup stream` run, for the summary and the logs. */
export interface StreamTotals {
  records: number;
  /** Records below the state's stored position (already in the state) and not decoded again. */
  skippedRecords: number;
  clipsIn: number;
  deadLetters: number;
  verdictsOut: number;
  /** Verdicts re-published at start after a crash between a checkpoint and its commit. */
  verdictsRepublished: number;
  checkpoints: number;
}

/** Everything the stream steps share. Collaborators are given; the pending fields change per batch. */
export interface StreamContext extends RunnableContext, StreamRunnableContext {
  readonly config: StreamConfig;
  readonly engine: DedupEngine;
  /** dim = the centroids', seenIds = the engine's known ids (a repeated id is refused). */
  readonly validation: ValidationState;
  readonly decodeOptions: KafkaDecodeOptions;
  readonly client: KafkaClient;
  readonly source: KafkaSource;
  readonly sink: KafkaSink;
  readonly deadLetters: DeadLetterWriter;
  readonly metrics: StreamMetrics;
  readonly totals: StreamTotals;
  pendingRows: number;
  pendingSince: number | null;
  backlog: boolean;
  /** Rows per record of the last decoded batch (JSON: 1; Arrow: many), to size the backlog. */
  rowsPerRecord: number;
  /** Records behind the end of each partition as of its last batch. */
  readonly lag: Map<number, bigint>;
  /** Refused rows to dead-letter at the next checkpoint, before the state moves past them. */
  pendingDeadLetters: DeadLetter[];
  /** Next offset to commit per partition, once the checkpoint is durable. */
  readonly pendingCommits: Map<number, KafkaCommitPosition>;
  /** Verdicts from the state checkpoint, for the publish step. */
  checkpointVerdicts: Verdict[];
}
