/**
 * A dedup worker of the scale-out stream (`semdedup stream --role worker`, docs/SCALING.md):
 * routed clips in from the internal by-cluster topic, one state per owned partition, duplicate
 * verdicts out. Assignment changes arrive as items in the batch stream.
 */
import { step } from '../src/runtime/runner.js';
import { defineStreamTopology, pipeline } from '../src/runtime/stream-runner.js';
import type { GroupSourceItem } from '../src/sources/kafka/group-source.js';
import type { WorkerContext } from '../src/stream/worker.js';
import {
  addFreshClips,
  checkpointPartitions,
  commitOwnedOffsets,
  decodeRouted,
  publishOwnedVerdicts,
  skipCheckpointed,
  trackAssignment,
  writeWorkerDeadLetters,
} from '../src/stream/worker.js';

export const workerTopology = defineStreamTopology<WorkerContext, GroupSourceItem>('worker', {
  start: [],
  perBatch: pipeline<WorkerContext, GroupSourceItem>()
    .then('assignment', trackAssignment) // lost → close; gained → open, rebuild if behind; stale batches dropped
    .then('skip-checkpointed', skipCheckpointed) // offsets below the partition state's position
    .then('decode', decodeRouted) // internal Arrow records → rows with their centroid
    .then('buffer', addFreshClips), // replays skipped, clashes → dead letters, rest → partition engine
  checkpoint: [
    step('dead-letter', writeWorkerDeadLetters), // refused rows → dead-letter topic (acked)
    step('checkpoint', checkpointPartitions), // per partition: kernel flush; state + position durable
    step('publish', publishOwnedVerdicts), // owned partitions only (lease checked); gained ones re-publish
    step('commit', commitOwnedOffsets), // offsets of partitions whose verdicts are all out
  ],
});
