/**
 * The streaming workflow (`semdedup stream`): Kafka clips in, duplicate verdicts out.
 * Each step is a stage from src/; the step id names it in logs and timings.
 */
import type { KafkaRecordBatch } from '../src/sources/kafka/index.js';
import { step } from '../src/runtime/runner.js';
import { defineStreamTopology, pipeline } from '../src/runtime/stream-runner.js';
import type { StreamContext } from '../src/stream/context.js';
import {
  bufferClips,
  commitCutOffsets,
  cutCheckpoint,
  decodeRecords,
  persistState,
  publishVerdicts,
  republishAfterCrash,
  skipCheckpointed,
  validateRows,
  writeCutDeadLetters,
} from '../src/stream/steps.js';

export const streamTopology = defineStreamTopology<StreamContext, KafkaRecordBatch>('stream', {
  start: [
    step('recover', republishAfterCrash), // state ahead of the commits → re-publish its verdicts
  ],
  // consume: the Kafka source hands batches of one partition to this chain, one at a time.
  perBatch: pipeline<StreamContext, KafkaRecordBatch>()
    .then('skip-checkpointed', skipCheckpointed) // offsets below the state's position: already in
    .then('decode', decodeRecords) // JSON / Arrow IPC → rows; undecodable records → row errors
    .then('validate', validateRows) // bad rows → pending dead letters; the rest to unit length
    .then('buffer', bufferClips), // assign to centroids, buffer per cluster (engine.add)
  // When --flush-max-rows rows wait or the oldest is --flush-max-ms old:
  checkpoint: [
    step('checkpoint', cutCheckpoint), // kernel flush; changes, verdicts, dead letters, offsets set aside
  ],
  // Then, in the background while the next batches are taken in (the next checkpoint waits for
  // them), each durable before the next:
  durable: [
    step('dead-letter', writeCutDeadLetters), // refused rows → dead-letter topic (acked)
    step('persist', persistState), // state + positions durable (DuckDB + embedding file)
    step('publish', publishVerdicts), // changed duplicate verdicts → output topic (acked)
    step('commit', commitCutOffsets), // consumer offsets
  ],
});
