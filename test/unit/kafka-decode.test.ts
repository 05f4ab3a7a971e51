import { tableFromIPC } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { deadLetterForRow, decodeKafkaRecords, SOURCE_ROW_HEADER } from '../../src/sources/kafka/index.js';
import type { KafkaDecodeOptions, KafkaRecord } from '../../src/sources/kafka/index.js';
import { clipMessagesArrow, clipMessagesJson } from '../../src/sinks/kafka/index.js';
import type { KafkaOutMessage } from '../../src/sinks/kafka/index.js';
import { createValidationState, validateRawBatch } from '../../src/validate/index.js';
import type { RawClipBatch } from '../../src/shared/types.js';
import { prng } from '../helpers/fixtures.js';

const options: KafkaDecodeOptions = { idField: 'id', embeddingField: 'embedding', metadataFields: ['duration_s', 'video'], idType: 'string' };

function record(value: Buffer | string, offset = 0, headers: KafkaRecord['headers'] = {}): KafkaRecord {
  return { topic: 't', partition: 0, offset: String(offset), key: null, value: Buffer.isBuffer(value) ? value : Buffer.from(value), headers, timestamp: '0' };
}

function fromMessages(messages: KafkaOutMessage[]): KafkaRecord[] {
  return messages.map((m, i) => {
    const headers: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = Buffer.from(v as string);
    return record(Buffer.isBuffer(m.value) ? m.value : Buffer.from(m.value as string), i, headers);
  });
}

function rawBatch(n: number, dim: number, idType: 'string' | 'int64' = 'string'): RawClipBatch {
  const rand = prng(n * 31 + dim);
  const values = Float32Array.from({ length: n * dim }, () => rand() - 0.5);
  return {
    ids: Array.from({ length: n }, (_, i) => (idType === 'int64' ? String(9007199254740993n + BigInt(i)) : `clip-${i}`)),
    idType,
    values,
    offsets: Int32Array.from({ length: n + 1 }, (_, i) => i * dim),
    embeddingNull: new Uint8Array(n),
    metadata: { duration_s: Array.from({ length: n }, (_, i) => i / 2), video: Array.from({ length: n }, (_, i) => `v${i % 3}`) },
    origin: {},
  };
}

describe('decodeKafkaRecords', () => {
  it('round-trips JSON and Arrow records (string and int64 ids beyond 2^53)', () => {
    for (const idType of ['string', 'int64'] as const) {
      const raw = rawBatch(37, 8, idType);
      for (const messages of [clipMessagesJson(raw), clipMessagesArrow(raw, { maxRows: 10 })]) {
        const decoded = decodeKafkaRecords(fromMessages(messages), { ...options, idType });
        expect(decoded.raw.rowErrors).toBeUndefined();
        expect(decoded.raw.ids).toEqual(raw.ids);
        expect(Array.from(decoded.raw.offsets)).toEqual(Array.from(raw.offsets));
        expect(Array.from(decoded.raw.values)).toEqual(Array.from(raw.values));
        expect(decoded.raw.metadata).toEqual(raw.metadata);
        expect(decoded.rows).toHaveLength(37);
      }
    }
    const arrow = decodeKafkaRecords(fromMessages(clipMessagesArrow(rawBatch(25, 4), { maxRows: 10 })), options);
    expect(arrow.arrowRecords).toBe(3);
    expect(arrow.rows.map((r) => r.rowInRecord)).toEqual([...Array(10).keys(), ...Array(10).keys(), ...Array(5).keys()]);
  });

  it('refuses wrong types with a reason and keeps the good rows', () => {
    const records = [
      record('{"id":"a","embedding":[1,2,3]}'),
      record('{"id":"b","embedding":[1,2,3'),
      record('{"id":"c","embedding":[1,NaN,3]}'),
      record('{"id":1,"embedding":[1,2,3]}'),
      record('{"embedding":[1,2,3]}'),
      record('{"id":"d","embedding":"x"}'),
      record('{"id":"e","embedding":[1,"2",3]}'),
      record('{"id":"f","embedding":[1,2,3],"video":{"a":1}}'),
      record('[1,2]'),
      record(''),
      record('{"id":"g","embedding":null}'),
      record('{"id":"h","embedding":[1,2]}'),
      record('{"id":"a","embedding":[3,2,1]}'),
    ];
    const decoded = decodeKafkaRecords(records, options);
    const { ok, rejected } = validateRawBatch(decoded.raw, createValidationState(3));
    expect(ok.ids).toEqual(['a']);
    const reasons = new Map(rejected.map((r) => [Number(decoded.rows[r.row!]!.record.offset) || r.row!, r.reason]));
    expect(rejected).toHaveLength(12);
    expect(rejected.map((r) => r.reason)).toEqual([
      expect.stringContaining('invalid JSON'),
      expect.stringContaining('invalid JSON'),
      'field "id" is 1; expected a string id',
      'no field "id"',
      'field "embedding" is not an array',
      'field "embedding" has a non-number element',
      'field "video" holds an object; expected a string, number or bool',
      'not a JSON object',
      'empty value (tombstone)',
      'embedding is null',
      'wrong dimension: 2, expected 3',
      'duplicate id a',
    ]);
    expect(reasons.size).toBeGreaterThan(0);
  });

  it('Arrow: a bad column refuses the record, a bad row refuses that row alone (dead letter = that row)', () => {
    const raw = rawBatch(4, 3);
    raw.values[5] = Number.NaN; // row 1
    const [good] = fromMessages(clipMessagesArrow(raw));
    const wrongId = fromMessages(clipMessagesArrow(raw, { idField: 'clip' }))[0]!;
    const decoded = decodeKafkaRecords([good!, wrongId], options);
    const { ok, rejected } = validateRawBatch(decoded.raw, createValidationState(3));
    expect(ok.ids).toEqual(['clip-0', 'clip-2', 'clip-3']);
    expect(rejected.map((r) => r.reason)).toEqual(['embedding has NaN at position 2', 'Arrow stream has no id column "id"']);
    const rowLetter = deadLetterForRow(decoded.rows[rejected[0]!.row!]!, rejected[0]!.reason);
    expect(tableFromIPC(rowLetter.record.value).getChild('id')!.toArray()).toEqual(['clip-1']);
    expect(rowLetter.record.headers[SOURCE_ROW_HEADER]).toEqual(Buffer.from('1'));
    const recordLetter = deadLetterForRow(decoded.rows[rejected[1]!.row!]!, rejected[1]!.reason);
    expect(recordLetter.record.value).toBe(wrongId.value);
  });

  it('Arrow: a lone record is validated and normalized in place; a refused row keeps the values sent; more records after it are copied', () => {
    const raw = rawBatch(5, 4);
    raw.values[6] = Number.POSITIVE_INFINITY; // row 1
    const sent = Float32Array.from(raw.values);
    const [one] = fromMessages(clipMessagesArrow(raw));
    const decoded = decodeKafkaRecords([one!], options);
    const { ok, rejected } = validateRawBatch(decoded.raw, createValidationState(4), { ownsValues: true, normalize: true });
    expect(ok.ids).toEqual(['clip-0', 'clip-2', 'clip-3', 'clip-4']);
    // Unit length, bit for bit the scaling of the values sent (float64 sum in order, float32 result).
    [0, 2, 3, 4].forEach((row, j) => {
      const x = Array.from(sent.subarray(row * 4, row * 4 + 4));
      const inv = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0));
      expect(Array.from(ok.embeddings.subarray(j * 4, j * 4 + 4))).toEqual(x.map((v) => Math.fround(v * inv)));
    });
    const letter = deadLetterForRow(decoded.rows[rejected[0]!.row!]!, rejected[0]!.reason);
    const sentBack = tableFromIPC(letter.record.value).getChild('embedding')!.get(0)!.toArray() as Float32Array;
    expect(Array.from(sentBack)).toEqual(Array.from(sent.subarray(4, 8)));

    // Two Arrow records and a JSON record in one batch: every row's values as sent, in order.
    const more = rawBatch(23, 4);
    const records = [...fromMessages(clipMessagesArrow(more, { maxRows: 10 })), record('{"id":"extra","embedding":[1,2,3,4]}', 9)];
    const mixed = decodeKafkaRecords(records, options);
    expect(Array.from(mixed.raw.values)).toEqual([...Array.from(more.values), 1, 2, 3, 4]);
    expect(mixed.raw.ids).toEqual([...more.ids, 'extra']);
    // An error row after a lone Arrow record: the values stay the record's.
    const withError = decodeKafkaRecords([fromMessages(clipMessagesArrow(more))[0]!, record('not json', 3)], options);
    expect(Array.from(withError.raw.values)).toEqual(Array.from(more.values));
    expect(withError.raw.offsets.at(-1)).toBe(more.values.length);
  });

  it('fuzz: random bytes, truncations and bit flips never crash; every record is accepted or refused with a reason', () => {
    const rand = prng(7);
    const json = fromMessages(clipMessagesJson(rawBatch(20, 4)));
    const arrow = fromMessages(clipMessagesArrow(rawBatch(20, 4), { maxRows: 5 }));
    const seeds = [...json, ...arrow];
    const records: KafkaRecord[] = [];
    for (let i = 0; i < 600; i++) {
      const base = seeds[Math.floor(rand() * seeds.length)]!;
      let bytes = Buffer.from(base.value);
      const mode = i % 4;
      if (mode === 0) bytes = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
      else if (mode === 1) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
      else if (mode === 2) for (let k = 0; k < 1 + rand() * 4; k++) bytes[Math.floor(rand() * bytes.length)] ^= 1 << Math.floor(rand() * 8);
      else if (rand() < 0.5) bytes = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), bytes.subarray(4)]);
      records.push(record(bytes, i, rand() < 0.5 ? base.headers : {}));
    }
    for (let at = 0; at < records.length; at += 50) {
      const slice = records.slice(at, at + 50);
      const decoded = decodeKafkaRecords(slice, options);
      expect(decoded.rows).toHaveLength(decoded.raw.ids.length);
      const { ok, rejected } = validateRawBatch(decoded.raw, createValidationState(4));
      expect(ok.ids.length + rejected.length).toBe(decoded.raw.ids.length);
      for (const r of rejected) expect(r.reason.length).toBeGreaterThan(0);
      // Every record shows up as at least one row.
      const seen = new Set(decoded.rows.map((r) => r.record));
      for (const r of slice) expect(seen.has(r)).toBe(true);
      for (const r of rejected) expect(() => deadLetterForRow(decoded.rows[r.row!]!, r.reason)).not.toThrow();
    }
  });
});

describe('reasonClass', () => {
  it('maps every refusal reason to a small label set', async () => {
    const { reasonClass } = await import('../../src/runtime/metrics.js');
    const cases: [string, string][] = [
      ['invalid JSON (Unexpected end of JSON input)', 'invalid_json'],
      ['not a JSON object', 'invalid_json'],
      ['empty value (tombstone)', 'empty_value'],
      ['invalid Arrow IPC stream (buffer 3 outside the body)', 'invalid_arrow'],
      ['id column "id" holds strings; this stream\'s ids are integers (--id-type)', 'invalid_arrow'],
      ['duplicate id clip-1', 'duplicate_id'],
      ['id is null or empty', 'missing_id'],
      ['wrong dimension: 3, expected 16', 'wrong_dimension'],
      ['embedding has NaN at position 2', 'non_finite'],
      ['embedding has Inf at position 0', 'non_finite'],
      ['embedding is the zero vector', 'zero_vector'],
      ['embedding is null', 'missing_embedding'],
      ['no field "id"; no field "embedding"', 'bad_field'],
      ['field "video" holds an object; expected a string, number or bool', 'bad_field'],
      ['something new', 'other'],
    ];
    for (const [reason, label] of cases) expect(reasonClass(reason), reason).toBe(label);
  });
});
