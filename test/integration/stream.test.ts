/**
 * `semdedup stream` against the real broker: after consuming clips shuffled over 4 partitions,
 * the verdict changelog's latest value per key equals the batch run's duplicates, for every
 * ranking and both record formats; bad records land in the dead-letter topic; a second run on
 * the same state continues; a run whose group is behind its state re-publishes, never re-adds.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createStreamMetrics } from '../../src/runtime/metrics.js';
import { clipMessagesArrow, createKafkaSink, DEAD_LETTER_HEADERS } from '../../src/sinks/kafka/index.js';
import { createKafkaClient } from '../../src/sources/kafka/index.js';
import type { KafkaAdmin, KafkaClient } from '../../src/sources/kafka/index.js';
import { InputError } from '../../src/shared/errors.js';
import { makeRows, tempDir } from '../helpers/fixtures.js';
import type { RefRow } from '../helpers/reference.js';
import {
  batchDuplicates,
  brokersFromEnv,
  headerOf,
  latestVerdicts,
  produce,
  readTopic,
  shuffled,
  stream,
  uniqueName,
  verdictDifferences,
  writeCentroids,
  writeFixture,
} from '../helpers/stream.js';

const brokers = brokersFromEnv(inject('kafkaBrokers'));
const EPS = 0.02;

describe.skipIf(brokers.length === 0)('semdedup stream on a real broker', () => {
  let client: KafkaClient;
  let admin: KafkaAdmin;
  const topics: string[] = [];
  const topic = (what: string): string => {
    const t = uniqueName(what);
    topics.push(t, `${t}.dlq`);
    return t;
  };
  const dir = tempDir('semdedup-stream-');
  const { rows, centers } = makeRows({ n: 400, dim: 16, centers: 4, seed: 21 });
  let input: string;
  let centroids: string;
  const inputTopics = { json: '', arrow: '' };

  beforeAll(async () => {
    client = createKafkaClient({ brokers, clientId: 'semdedup-test' });
    admin = await client.connectAdmin();
    input = await writeFixture(dir, 'clips', rows);
    centroids = writeCentroids(dir, centers);
    // The same clips, shuffled, in both formats: every ranking's stream reads these.
    const mixed = await writeFixture(dir, 'shuffled', shuffled(rows, 5));
    inputTopics.json = topic('clips-json');
    inputTopics.arrow = topic('clips-arrow');
    await produce(brokers, mixed, inputTopics.json, 'json');
    await produce(brokers, mixed, inputTopics.arrow, 'arrow');
  });

  afterAll(async () => {
    await admin?.deleteTopics(topics.filter((t) => t)).catch(() => {});
    await admin?.close();
  });

  const rankings: [string, Record<string, unknown>][] = [
    ['hard', {}],
    ['easy', { whichToKeep: 'easy' }],
    ['random', { whichToKeep: 'random' }],
    ['l2', { distanceMetric: 'l2' }],
    ['metadata', { ranking: 'duration_s:desc,video:asc' }],
  ];

  it.each(rankings)('ranking %s: the changelog equals the batch duplicates, JSON and Arrow', async (name, flags) => {
    const expected = await batchDuplicates(input, join(dir, `batch-${name}`), centroids, EPS, flags);
    expect(expected.size).toBeGreaterThan(20);
    for (const format of ['json', 'arrow'] as const) {
      const output = topic(`dups-${name}-${format}`);
      const summary = await stream(brokers, {
        inputTopic: inputTopics[format],
        outputTopic: output,
        group: uniqueName('group'),
        centroids,
        state: join(dir, `state-${name}-${format}`),
        eps: EPS,
        // Small flushes: many checkpoints, so later clips raise earlier clips' published scores.
        flushMaxRows: 37,
        ...flags,
      });
      expect(summary).toMatchObject({ clipsIn: rows.length, deadLetters: 0, stopped: 'end', stateSize: rows.length });
      expect(summary.checkpoints).toBeGreaterThan(1);
      const got = await latestVerdicts(brokers, output);
      expect(verdictDifferences(got, expected), `${name} ${format}`).toEqual([]);
    }
  });

  it('int64 ids (JSON numbers) equal the batch run too', async () => {
    const ints = makeRows({ n: 200, dim: 8, centers: 3, seed: 4, intIds: true });
    const path = await writeFixture(dir, 'ints', ints.rows, { intIds: true });
    const intCentroids = writeCentroids(dir, ints.centers, 'int-centroids.npy');
    const expected = await batchDuplicates(path, join(dir, 'batch-int'), intCentroids, EPS);
    const inputTopic = topic('ints');
    await produce(brokers, await writeFixture(dir, 'ints-shuffled', shuffled(ints.rows, 2), { intIds: true }), inputTopic, 'json');
    const output = topic('dups-int');
    await stream(brokers, { inputTopic, outputTopic: output, group: uniqueName('group'), centroids: intCentroids, state: join(dir, 'state-int'), eps: EPS, idType: 'int64', flushMaxRows: 50 });
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);
  });

  it('malformed records go to the dead-letter topic with a reason; the stream goes on', async () => {
    const dim = 16;
    const extra: RefRow[] = [0, 1, 2].map((i) => ({ id: `arrow-${i}`, embedding: rows[i * 7]!.embedding.map((x) => x + 0.5), meta: { duration_s: 1, video: 'v1' } }));
    const expected = await batchDuplicates(await writeFixture(dir, 'with-extra', [...rows, extra[0]!, extra[2]!]), join(dir, 'batch-extra'), centroids, EPS);
    const inputTopic = topic('malformed');
    await produce(brokers, await writeFixture(dir, 'shuffled-2', shuffled(rows, 9)), inputTopic, 'json');
    const good = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => (i + 1) / n));
    const sink = await createKafkaSink(client);
    try {
      await sink.send(inputTopic, [
        { key: 'bad-json', value: `{"id":"bad-json","embedding":[1,2` },
        { key: 'nan', value: `{"id":"nan","embedding":[NaN${',1'.repeat(dim - 1)}]}` },
        { key: 'short', value: `{"id":"short","embedding":[1,2,3]}` },
        { key: 'no-id', value: `{"embedding":${good(dim)}}` },
        // Same key as the original, so the same partition, after it: refused as a repeat.
        { key: rows[3]!.id, value: `{"id":"${rows[3]!.id}","embedding":${good(dim)}}` },
      ]);
      // An Arrow record whose second row holds a NaN: only that row is refused.
      const nanRow = { ...extra[1]!, embedding: extra[1]!.embedding.map((x, i) => (i === 4 ? Number.NaN : x)) };
      const arrowRows = [extra[0]!, nanRow, extra[2]!];
      const raw = {
        ids: arrowRows.map((r) => r.id),
        idType: 'string' as const,
        values: Float32Array.from(arrowRows.flatMap((r) => r.embedding)),
        offsets: Int32Array.from({ length: 4 }, (_, i) => i * dim),
        embeddingNull: new Uint8Array(3),
        metadata: { duration_s: arrowRows.map((r) => r.meta!.duration_s!), video: arrowRows.map((r) => r.meta!.video!) },
        origin: {},
      };
      await sink.send(inputTopic, clipMessagesArrow(raw));
      // Undecodable bytes, with and without an Arrow content-type; two records over
      // --max-record-bytes (below), the second too large to be dead-lettered with its value.
      await sink.send(inputTopic, [
        { key: 'garbage', value: Buffer.from([0x00, 0x9f, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef]) },
        { key: 'bad-arrow', value: Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('not an arrow message at all')]), headers: { 'content-type': 'application/vnd.apache.arrow.stream' } },
        { key: 'big', value: `{"id":"big","embedding":${good(dim)},"pad":"${'x'.repeat(6000)}"}` },
        { key: 'huge', value: `{"id":"huge","embedding":${good(dim)},"pad":"${'x'.repeat(950_000)}"}` },
      ]);
    } finally {
      await sink.close();
    }
    const output = topic('dups-malformed');
    const metrics = createStreamMetrics();
    const summary = await stream(brokers, { inputTopic, outputTopic: output, group: uniqueName('group'), centroids, state: join(dir, 'state-malformed'), eps: EPS, flushMaxRows: 64, maxRecordBytes: 4096 }, { metrics });
    expect(summary).toMatchObject({ clipsIn: rows.length + 2, deadLetters: 10 });
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);
    // Counted by reason class.
    const counted = Object.fromEntries((await metrics.deadLetters.get()).values.map((v) => [v.labels.reason, v.value]));
    expect(counted).toEqual({ invalid_json: 3, wrong_dimension: 1, bad_field: 1, duplicate_id: 1, non_finite: 1, invalid_arrow: 1, oversized: 2 });

    const letters = await readTopic(brokers, `${inputTopic}.dlq`);
    expect(letters).toHaveLength(10);
    const byKey = new Map(letters.map((l) => [l.key?.toString() ?? '(none)', l]));
    for (const l of letters) {
      expect(headerOf(l, DEAD_LETTER_HEADERS.sourceTopic)).toBe(inputTopic);
      expect(Number(headerOf(l, DEAD_LETTER_HEADERS.sourcePartition))).toBeGreaterThanOrEqual(0);
      expect(Number(headerOf(l, DEAD_LETTER_HEADERS.sourceOffset))).toBeGreaterThanOrEqual(0);
    }
    expect(headerOf(byKey.get('bad-json')!, 'reason')).toMatch(/^invalid JSON/);
    expect(byKey.get('bad-json')!.value.toString()).toBe(`{"id":"bad-json","embedding":[1,2`); // original bytes
    expect(headerOf(byKey.get('nan')!, 'reason')).toMatch(/^invalid JSON/);
    expect(headerOf(byKey.get('short')!, 'reason')).toBe('wrong dimension: 3, expected 16');
    expect(headerOf(byKey.get('no-id')!, 'reason')).toBe('no field "id"');
    expect(headerOf(byKey.get(rows[3]!.id)!, 'reason')).toBe(`duplicate id ${rows[3]!.id}`);
    const arrowLetter = byKey.get('arrow-0')!; // keyed by the record's first id
    expect(headerOf(arrowLetter, 'reason')).toBe('embedding has NaN at position 4');
    expect(headerOf(arrowLetter, 'source-row')).toBe('1');
    expect(headerOf(arrowLetter, 'content-type')).toBe('application/vnd.apache.arrow.stream');
    expect(headerOf(byKey.get('garbage')!, 'reason')).toMatch(/^invalid JSON/);
    expect(byKey.get('garbage')!.value).toEqual(Buffer.from([0x00, 0x9f, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef]));
    expect(headerOf(byKey.get('bad-arrow')!, 'reason')).toMatch(/^invalid Arrow IPC stream/);
    const big = byKey.get('big')!;
    expect(headerOf(big, 'reason')).toBe(`record of ${big.value.length} bytes exceeds --max-record-bytes 4096`);
    expect(headerOf(big, DEAD_LETTER_HEADERS.valueOmitted)).toBeUndefined(); // small enough to keep
    const huge = byKey.get('huge')!;
    expect(headerOf(huge, 'reason')).toMatch(/^record of 95\d{4} bytes exceeds --max-record-bytes 4096$/);
    expect(huge.value.length).toBe(0); // left out: the dead letter must fit the topic's 1 MiB limit
    expect(Number(headerOf(huge, DEAD_LETTER_HEADERS.valueOmitted))).toBeGreaterThan(950_000);
  });

  it('a second run on the same state continues; a group behind its state re-publishes and adds nothing twice', async () => {
    const old = rows.slice(0, 250);
    const fresh = rows.slice(250);
    const expected = await batchDuplicates(input, join(dir, 'batch-all'), centroids, EPS);
    const inputTopic = topic('continue');
    const output = topic('dups-continue');
    const group = uniqueName('group');
    const state = join(dir, 'state-continue');
    const settings = { inputTopic, outputTopic: output, group, centroids, state, eps: EPS, flushMaxRows: 40 };
    await produce(brokers, await writeFixture(dir, 'old', shuffled(old, 1)), inputTopic, 'json');
    const first = await stream(brokers, settings);
    expect(first).toMatchObject({ clipsIn: 250, stateSize: 250 });

    await produce(brokers, await writeFixture(dir, 'fresh', shuffled(fresh, 2)), inputTopic, 'arrow');
    const second = await stream(brokers, settings);
    expect(second).toMatchObject({ clipsIn: 150, stateSize: 400, skippedRecords: 0 });
    expect(verdictDifferences(await latestVerdicts(brokers, output), expected)).toEqual([]);

    // A new group on the same state: like a crash after the state checkpoint, before the commit.
    const output2 = topic('dups-recovered');
    const third = await stream(brokers, { ...settings, group: uniqueName('group'), outputTopic: output2 });
    expect(third).toMatchObject({ clipsIn: 0, deadLetters: 0, stateSize: 400, verdictsRepublished: expected.size });
    expect(third.skippedRecords).toBe(third.records);
    expect(verdictDifferences(await latestVerdicts(brokers, output2), expected)).toEqual([]);

    // The state refuses other settings.
    await expect(stream(brokers, { ...settings, eps: 0.05 })).rejects.toThrow(InputError);
  });
});
