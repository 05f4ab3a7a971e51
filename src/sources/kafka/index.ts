/**
 * Kafka source stage: the client (shared with `src/sinks/kafka`), topic administration and the
 * consumer-group source. kafkajs stays behind these exports.
 */
export { createKafkaClient, ensureTopics, isTransientKafkaError, kafkaError, kafkajsToPino, withKafkaRetry, withKafkaRetryWindow } from './client.js';
export type {
  EnsuredTopic,
  KafkaAdmin,
  KafkaClient,
  KafkaConnectionConfig,
  KafkaSaslConfig,
  TopicPartitionOffsets,
  TopicSpec,
} from './client.js';
export { createKafkaSource } from './source.js';
export type { KafkaSource, KafkaSourceConfig } from './source.js';
export { headerText } from './types.js';
export type { KafkaCommitPosition, KafkaHeaders, KafkaRecord, KafkaRecordBatch } from './types.js';
export { ARROW_STREAM_CONTENT_TYPE, deadLetterForRow, decodeKafkaRecords, isArrowRecord, JSON_CONTENT_TYPE, SOURCE_ROW_HEADER } from './decode.js';
export type { DecodedKafkaBatch, KafkaDecodeOptions, RowOrigin } from './decode.js';
