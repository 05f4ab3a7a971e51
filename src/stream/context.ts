import type { RunnableContext } from '../runtime/runner.js';
import type { StreamMetrics } from '../runtime/metrics.js';
import type { StreamRunnableContext } from '../runtime/stream-runner.js';
import type { StreamConfig } from '../shared/stream-config.js';
import type { DeadLetter, DeadLetterWriter, KafkaSink } from '../sinks/kafka/index.js';
import type { KafkaClient, KafkaCommitPosition, KafkaDecodeOptions, KafkaSource } from '../sources/kafka/index.js';
import type { DedupEngine, PendingCheckpoint } from '../state/dedup-engine.js';
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
  /**
   * Checkpoints cut and not yet committed, oldest first: the durable steps work on the first
   * (the runner runs them one checkpoint after the other) and the commit step removes it.
   */
  readonly cuts: CheckpointCut[];
}

/** A checkpoint between its cut and its offset commit (`topologies/stream.ts`). */
export interface CheckpointCut {
  /** performance.now() at the cut. */
  readonly startedAt: number;
  /** The state's write and the verdicts to publish after it. */
  readonly pending: PendingCheckpoint;
  /** Refused rows to dead-letter before the state's write. */
  readonly deadLetters: readonly DeadLetter[];
  /** Offsets to commit once the verdicts are out. */
  readonly commits: readonly KafkaCommitPosition[];
}
