/** Kafka sink stage: idempotent producer and dead-letter writer. The client comes from `src/sources/kafka`. */
export { chunkBySize, createKafkaSink } from './sink.js';
export type { KafkaOutMessage, KafkaSendResult, KafkaSink, KafkaSinkConfig } from './sink.js';
export { createDeadLetterWriter, DEAD_LETTER_HEADERS, DEAD_LETTER_MAX_BYTES, toDeadLetterMessage } from './dead-letter.js';
export type { DeadLetter, DeadLetterWriter } from './dead-letter.js';
export { clipMessagesArrow, clipMessagesJson, encodeArrowRows } from './clip-records.js';
export type { ArrowMessageOptions, ClipRecordFields } from './clip-records.js';
export { verdictMessage } from './verdicts.js';
export type { VerdictValue } from './verdicts.js';
