/**
 * The Kafka source and sink against the real broker (test/global-setup.ts starts it). Every
 * test uses its own topics and group, so tests and parallel runs never share state.
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafkaClient, createKafkaSource, ensureTopics, headerText, kafkajsToPino } from '../../src/sources/kafka/index.js';
import type { KafkaAdmin, KafkaClient, KafkaRecordBatch } from '../../src/sources/kafka/index.js';
import { chunkBySize, createDeadLetterWriter, createKafkaSink, DEAD_LETTER_HEADERS } from '../../src/sinks/kafka/index.js';
import type { KafkaOutMessage } from '../../src/sinks/kafka/index.js';

const brokers = (inject('kafkaBrokers') || process.env.KAFKA_BROKERS || '').split(',').filter(Boolean);

function uniqueName(what: string): string {
  return `semdedup-test-${what}-${randomUUID().slice(0, 8)}`;
}

function clipMessages(from: number, to: number): KafkaOutMessage[] {
  const messages: KafkaOutMessage[] = [];
  for (let i = from; i < to; i++) {
    messages.push({
      key: `clip-${i}`,
      value: JSON.stringify({ id: `clip-${i}`, embedding: [i, i + 1, i + 2] }),
      headers: { 'content-type': 'application/json' },
    });
  }
  return messages;
}

/** Reads a source to its end, committing after each batch as a pipeline would once durable. */
async function drain(source: Awaited<ReturnType<typeof createKafkaSource>>): Promise<KafkaRecordBatch[]> {
  const batches: KafkaRecordBatch[] = [];
  for await (const batch of source.batches()) {
    batches.push(batch);
    await source.commit(batch.commitPosition);
  }
  return batches;
}

describe('kafka adapters on a real broker', () => {
  let client: KafkaClient;
  let admin: KafkaAdmin;
  const topics: string[] = [];

  beforeAll(async () => {
    client = createKafkaClient({ brokers, clientId: 'semdedup-test' });
    admin = await client.connectAdmin();
  });

  afterAll(async () => {
    await admin?.deleteTopics(topics).catch(() => {});
    await admin?.close();
  });

  it('delivers every record exactly once up to the end offsets seen at start, then commits them', async () => {
    const topic = uniqueName('clips');
    const groupId = uniqueName('group');
    topics.push(topic);
    const [ensured] = await ensureTopics(admin, [{ topic, numPartitions: 4 }]);
    expect(ensured).toEqual({ topic, created: true, numPartitions: 4 });

    const n = 2000;
    const sink = await createKafkaSink(client);
    try {
      for (let i = 0; i < n; i += 500) await sink.send(topic, clipMessages(i, i + 500));
      const ends = await admin.fetchTopicOffsets(topic);
      expect(ends.map((o) => o.partition)).toEqual([0, 1, 2, 3]);
      expect(ends.reduce((sum, o) => sum + Number(o.high), 0)).toBe(n);
      expect(ends.every((o) => Number(o.high) > 0)).toBe(true); // keys spread over all 4 partitions

      const source = await createKafkaSource(client, { topic, groupId, stopAtEnd: true });
      let batches: KafkaRecordBatch[];
      try {
        // Written after the start: past the captured end offsets, so not part of this run.
        await sink.send(topic, clipMessages(n, n + 100));
        batches = await drain(source);
        expect(source.endOffsets).toEqual(new Map(ends.map((o) => [o.partition, o.high])));
      } finally {
        await source.close();
      }

      const keys = batches.flatMap((b) => b.records.map((r) => r.key?.toString()));
      expect(keys).toHaveLength(n);
      expect(new Set(keys)).toEqual(new Set(clipMessages(0, n).map((m) => m.key)));
      for (const batch of batches) {
        // One partition per batch, consecutive offsets, commit position just past the last one.
        const offsets = batch.records.map((r) => Number(r.offset));
        expect(batch.records.every((r) => r.partition === batch.partition && r.topic === topic)).toBe(true);
        expect(offsets).toEqual(offsets.map((_, i) => offsets[0]! + i));
        expect(batch.commitPosition).toEqual({ topic, partition: batch.partition, offset: String(offsets.at(-1)! + 1) });
        expect(headerText(batch.records[0]!.headers, 'content-type')).toBe('application/json');
      }
      const first = batches[0]!.records[0]!;
      expect(JSON.parse(first.value.toString())).toMatchObject({ id: first.key?.toString() });

      const committed = await admin.fetchCommittedOffsets(groupId, topic);
      expect(committed).toEqual(new Map(ends.map((o) => [o.partition, o.high])));

      // The same group resumes from its commits: only the 100 late records, once each.
      const again = await createKafkaSource(client, { topic, groupId, stopAtEnd: true });
      try {
        const late = (await drain(again)).flatMap((b) => b.records.map((r) => r.key?.toString()));
        expect(late.sort()).toEqual(clipMessages(n, n + 100).map((m) => m.key as string).sort());
      } finally {
        await again.close();
      }
      const endsNow = await admin.fetchTopicOffsets(topic);
      expect(await admin.fetchCommittedOffsets(groupId, topic)).toEqual(new Map(endsNow.map((o) => [o.partition, o.high])));

      // Nothing left: ends at once.
      const empty = await createKafkaSource(client, { topic, groupId, stopAtEnd: true });
      try {
        expect(await drain(empty)).toEqual([]);
      } finally {
        await empty.close();
      }
    } finally {
      await sink.close();
    }
  });

  it('writes a dead letter with the original bytes, the original headers and a reason header', async () => {
    const topic = uniqueName('in');
    const deadLetterTopic = uniqueName('dlq');
    topics.push(topic, deadLetterTopic);
    await ensureTopics(admin, [
      { topic, numPartitions: 4 },
      { topic: deadLetterTopic, numPartitions: 1 },
    ]);
    const sink = await createKafkaSink(client);
    try {
      const bytes = Buffer.from([0x00, 0xff, 0x7b, 0x80, 0x0a]); // not UTF-8, not JSON
      await sink.send(topic, [{ key: 'clip-bad', value: bytes, headers: { 'content-type': 'application/json', trace: 'abc' } }]);

      const source = await createKafkaSource(client, { topic, groupId: uniqueName('group'), stopAtEnd: true });
      const [batch] = await drain(source).finally(() => source.close());
      const record = batch!.records[0]!;
      const reason = 'invalid JSON: Unexpected token at byte 0';
      const written = await createDeadLetterWriter(sink, deadLetterTopic).write([{ record, reason }]);
      expect(written).toEqual([{ topic: deadLetterTopic, partition: 0, baseOffset: '0' }]);

      const dlq = await createKafkaSource(client, { topic: deadLetterTopic, groupId: uniqueName('group'), stopAtEnd: true });
      const [letters] = await drain(dlq).finally(() => dlq.close());
      expect(letters!.records).toHaveLength(1);
      const letter = letters!.records[0]!;
      expect(letter.value.equals(bytes)).toBe(true);
      expect(letter.key?.toString()).toBe('clip-bad');
      expect(headerText(letter.headers, DEAD_LETTER_HEADERS.reason)).toBe(reason);
      expect(headerText(letter.headers, 'content-type')).toBe('application/json');
      expect(headerText(letter.headers, 'trace')).toBe('abc');
      expect(headerText(letter.headers, DEAD_LETTER_HEADERS.sourceTopic)).toBe(topic);
      expect(headerText(letter.headers, DEAD_LETTER_HEADERS.sourcePartition)).toBe(String(record.partition));
      expect(headerText(letter.headers, DEAD_LETTER_HEADERS.sourceOffset)).toBe(record.offset);
    } finally {
      await sink.close();
    }
  });

  it('fetches nothing while paused and resumes where it stopped', async () => {
    const topic = uniqueName('paused');
    topics.push(topic);
    await ensureTopics(admin, [{ topic, numPartitions: 1 }]);
    const sink = await createKafkaSink(client);
    const source = await createKafkaSource(client, { topic, groupId: uniqueName('group'), maxWaitTimeMs: 100 });
    try {
      const batches = source.batches();
      source.pause();
      await new Promise((resolve) => setTimeout(resolve, 500)); // let a fetch issued before the pause return
      await sink.send(topic, clipMessages(0, 10));
      const next = batches.next();
      const early = await Promise.race([next.then(() => 'batch'), new Promise((resolve) => setTimeout(() => resolve('nothing'), 1500))]);
      expect(early).toBe('nothing');
      source.resume();
      const { value } = await next;
      expect((value as KafkaRecordBatch).records.map((r) => r.key?.toString())).toEqual(clipMessages(0, 10).map((m) => m.key));
    } finally {
      await source.close();
      await sink.close();
    }
  });

  it('ensureTopics leaves an existing topic alone and reports its real partition count', async () => {
    const topic = uniqueName('existing');
    topics.push(topic);
    await ensureTopics(admin, [{ topic, numPartitions: 2 }]);
    expect(await ensureTopics(admin, [{ topic, numPartitions: 4 }])).toEqual([{ topic, created: false, numPartitions: 2 }]);
  });

  it('refuses a topic that does not exist with an input error naming it', async () => {
    const topic = uniqueName('missing');
    await expect(createKafkaSource(client, { topic, groupId: uniqueName('group') })).rejects.toThrow(
      expect.objectContaining({ name: 'InputError', message: expect.stringContaining(topic) }),
    );
  });
});

describe('kafka adapter helpers (no broker)', () => {
  it('routes kafkajs log entries to pino without credentials', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const log = kafkajsToPino(pino({ level: 'warn' }, sink))(2);
    log({ namespace: 'Connection', level: 2, label: 'WARN', log: { timestamp: 'now', message: 'slow broker', broker: 'b:9092', sasl: { password: 'hunter2' }, password: 'hunter2' } });
    log({ namespace: 'Connection', level: 4, label: 'INFO', log: { timestamp: 'now', message: 'below warn' } });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, msg: 'slow broker', namespace: 'Connection', broker: 'b:9092' });
    expect(lines[0]).not.toContain('hunter2');
  });

  it('splits a send into requests under the byte limit, keeping order', () => {
    const messages = clipMessages(0, 100);
    const chunks = chunkBySize(messages, 1000);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.flat()).toEqual(messages);
    const huge: KafkaOutMessage = { key: 'big', value: Buffer.alloc(5000) };
    expect(chunkBySize([huge], 1000)).toEqual([[huge]]); // alone; the broker decides
  });
});
