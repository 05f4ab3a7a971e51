/**
 * Dead letters: records semdedup refused, written unchanged (key, value and headers byte for
 * byte) to a dead-letter topic with a `reason` header and where they came from. None is
 * dropped silently. The one exception to "unchanged": a value that would make the dead letter
 * too large for the dead-letter topic (Kafka's default limit is 1 MiB) is left out, and a
 * `value-omitted` header gives its size, so writing the dead letter itself cannot fail.
 */
import type { KafkaRecord } from '../../sources/kafka/index.js';
import type { KafkaOutMessage, KafkaSendResult, KafkaSink } from './sink.js';

/** Header names a dead letter carries besides the original headers. */
export const DEAD_LETTER_HEADERS = {
  reason: 'reason',
  sourceTopic: 'source-topic',
  sourcePartition: 'source-partition',
  sourceOffset: 'source-offset',
  /** Present when the value was left out (too large): the original value's size, bytes. */
  valueOmitted: 'value-omitted',
} as const;

/** Default bound on a dead letter's encoded size, under Kafka's default 1 MiB message limit. */
export const DEAD_LETTER_MAX_BYTES = 900_000;

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

/** `maxBytes`: a dead letter whose key, value and headers exceed it goes out without its value. */
export function createDeadLetterWriter(sink: KafkaSink, topic: string, options: { maxBytes?: number } = {}): DeadLetterWriter {
  const maxBytes = options.maxBytes ?? DEAD_LETTER_MAX_BYTES;
  return {
    topic,
    write: (letters) => sink.send(topic, letters.map((l) => toDeadLetterMessage(l, maxBytes))),
  };
}

export function toDeadLetterMessage({ record, reason }: DeadLetter, maxBytes = DEAD_LETTER_MAX_BYTES): KafkaOutMessage {
  const headers: Record<string, Buffer | string | readonly (Buffer | string)[]> = {
    ...record.headers,
    [DEAD_LETTER_HEADERS.reason]: reason,
    [DEAD_LETTER_HEADERS.sourceTopic]: record.topic,
    [DEAD_LETTER_HEADERS.sourcePartition]: String(record.partition),
    [DEAD_LETTER_HEADERS.sourceOffset]: record.offset,
  };
  let value: Buffer | null = record.value;
  if (encodedSize(record.key, value, headers) > maxBytes) {
    headers[DEAD_LETTER_HEADERS.valueOmitted] = String(record.value.length);
    value = Buffer.alloc(0);
  }
  return { key: record.key, value, headers };
}

/** Key, value and header bytes plus a record's overhead (upper estimate). */
function encodedSize(key: Buffer | null, value: Buffer, headers: Readonly<Record<string, Buffer | string | readonly (Buffer | string)[]>>): number {
  let size = 64 + (key?.length ?? 0) + value.length;
  for (const [name, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v]) size += 8 + Buffer.byteLength(name) + (typeof one === 'string' ? Buffer.byteLength(one) : (one as Buffer).length);
  }
  return size;
}
