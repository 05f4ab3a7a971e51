/** Records and batches as the Kafka source hands them out; no kafkajs types here. */

/** Header values as Kafka has them: a key repeated in one record gives an array. */
export type KafkaHeaders = Readonly<Record<string, Buffer | readonly Buffer[]>>;

export interface KafkaRecord {
  readonly topic: string;
  readonly partition: number;
  /** int64 as a decimal string. */
  readonly offset: string;
  readonly key: Buffer | null;
  /** The record's bytes; a tombstone (null value) arrives as an empty buffer. */
  readonly value: Buffer;
  readonly headers: KafkaHeaders;
  /** Record timestamp, ms since the epoch, as a decimal string. */
  readonly timestamp: string;
}

/** Where a consumer group resumes a partition: `offset` is the next offset to read. */
export interface KafkaCommitPosition {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
}

/** Consecutive records of one partition, in offset order. */
export interface KafkaRecordBatch {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly KafkaRecord[];
  /** Commit this (through `KafkaSource.commit`) once every record of the batch is durable downstream. */
  readonly commitPosition: KafkaCommitPosition;
  /** The partition's end offset when the batch was fetched (lag = highWatermark - commitPosition.offset). */
  readonly highWatermark: string;
  /** `performance.now()` when the source received the batch (it may wait for the reader after that). */
  readonly receivedAt?: number;
}

/** First value of a header as UTF-8, or undefined. */
export function headerText(headers: KafkaHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  const first = Buffer.isBuffer(value) ? value : (value as readonly Buffer[])[0];
  return first?.toString('utf8');
}
