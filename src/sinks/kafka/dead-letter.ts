/**
 * Dead letters: records semdedup refused, written unchanged (key, value and headers byte for
 * byte) to a dead-letter topic with a `reason` header and where they came from. None is
 * dropped silently.
 */
import type { KafkaRecord } from '../../sources/kafka/index.js';
import type { KafkaOutMessage, KafkaSendResult, KafkaSink } from './sink.js';

/** Header names a dead letter carries besides the original headers. */
export const DEAD_LETTER_HEADERS = {
  reason: 'reason',
  sourceTopic: 'source-topic',
  sourcePartition: 'source-partition',
  sourceOffset: 'source-offset',
} as const;

export interface DeadLetter {
  readonly record: KafkaRecord;
  /** Why it was refused, one line, e.g. `embedding: expected 768 floats, got 512`. */
  readonly reason: string;
}

export interface DeadLetterWriter {
  readonly topic: string;
  /** Resolves when every letter is durable in the dead-letter topic. */
  write(letters: readonly DeadLetter[]): Promise<KafkaSendResult[]>;
}

export function createDeadLetterWriter(sink: KafkaSink, topic: string): DeadLetterWriter {
  return {
    topic,
    write: (letters) => sink.send(topic, letters.map(toDeadLetterMessage)),
  };
}

export function toDeadLetterMessage({ record, reason }: DeadLetter): KafkaOutMessage {
  return {
    key: record.key,
    value: record.value,
    headers: {
      ...record.headers,
      [DEAD_LETTER_HEADERS.reason]: reason,
      [DEAD_LETTER_HEADERS.sourceTopic]: record.topic,
      [DEAD_LETTER_HEADERS.sourcePartition]: String(record.partition),
      [DEAD_LETTER_HEADERS.sourceOffset]: record.offset,
    },
  };
}
