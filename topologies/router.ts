/**
 * The router of the scale-out stream (`semdedup stream --role router`, docs/SCALING.md): clips
 * in, validated and assigned clips out on the internal by-cluster topic. Stateless.
 */
import type { KafkaRecordBatch } from '../src/sources/kafka/index.js';
import { step } from '../src/runtime/runner.js';
import { defineStreamTopology, pipeline } from '../src/runtime/stream-runner.js';
import type { RouterContext } from '../src/stream/router.js';
import { routeToClusters, takeAndDecode, validateAndNormalize } from '../src/stream/router.js';
import { commitOffsets, writeDeadLetters } from '../src/stream/steps.js';

export const routerTopology = defineStreamTopology<RouterContext, KafkaRecordBatch>('router', {
  start: [],
  perBatch: pipeline<RouterContext, KafkaRecordBatch>()
    .then('decode', takeAndDecode) // JSON / Arrow IPC → rows; offsets to commit noted
    .then('validate', validateAndNormalize) // bad rows → pending dead letters; unit length
    .then('route', routeToClusters), // assign; one Arrow record per cluster → internal topic (acked)
  checkpoint: [
    step('dead-letter', writeDeadLetters), // refused rows → dead-letter topic (acked)
    step('commit', commitOffsets), // input offsets: everything before them is in the internal topic
  ],
});
