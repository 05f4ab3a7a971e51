/**
 * Replay (`semdedup replay`): history through the streaming core — the same validate → normalize
 * → assign → cluster buffers → kernel → state steps as `stream`, with Parquet as the source and
 * the NeMo output layout (and optionally the duplicates topic) as sinks.
 */
import type { ReplayContext } from '../src/replay/context.js';
import { openReplayState, replayClips, writeReplayOutputs } from '../src/replay/steps.js';
import { defineTopology, step } from '../src/runtime/runner.js';

export const replayTopology = defineTopology<ReplayContext>('replay', [
  step('open-state', openReplayState), // centroids, --state (continued when it exists), kernel
  step('replay', replayClips), // files → stream core; checkpoints; verdicts → --output-topic
  step('write-outputs', writeReplayOutputs), // kmeans_results, pairwise_results, duplicates, DuckDB
]);
