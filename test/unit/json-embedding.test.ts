/**
 * The JSON fast path (src/sources/kafka/json-embedding.ts) against the ordinary path it stands
 * in for: every number must become `Math.fround(Number(text))` exactly, and every document must
 * decode to what `JSON.parse` of the whole text gives (or be left to it).
 */
import { describe, expect, it } from 'vitest';
import { decodeKafkaRecords } from '../../src/sources/kafka/index.js';
import type { KafkaDecodeOptions, KafkaRecord } from '../../src/sources/kafka/index.js';
import { splitJsonEmbedding } from '../../src/sources/kafka/json-embedding.js';
import { prng } from '../helpers/fixtures.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number) => {
  f32[0] = x;
  return u32[0]!;
};
const fromBits = (b: number) => {
  u32[0] = b >>> 0;
  return f32[0]!;
};

/** Number texts a producer may write: shortest forms of float32 and float64 values, exponents, edges. */
function numberTexts(seed: number): string[] {
  const rand = prng(seed);
  const out: string[] = ['0', '-0', '0.0', '-0.0', '1', '-1', '1e0', '1E+2', '1e-2', '12.5e-3', '0.000001', '123456789012345678901234567890', '1e39', '-1e39', '3.4028235e38', '3.4028236e38', '1e-46', '1.4e-45', '7e-46', '1e-40', '2.5e-44', '0.1', '0.30000000000000004', '9007199254740993', '4.9406564584124654e-324', '1e-400', '1e400', '1.00000000000000000000001', '0.12345678901234567890123'];
  for (let i = 0; i < 4000; i++) {
    const scale = 10 ** Math.floor(rand() * 12 - 8);
    const v = (rand() - 0.5) * scale;
    out.push(String(Math.fround(v))); // what JSON.stringify writes for a float32 value
    out.push(String(v)); // a float64 value
    out.push(Math.fround(v).toExponential()); // exponent form
    out.push(v.toFixed(Math.floor(rand() * 20))); // fixed form with up to 19 decimals
  }
  // Exactly on, and a hair off, the midpoints between neighbouring float32 values.
  for (let i = 0; i < 2000; i++) {
    const f = Math.fround((rand() - 0.5) * 10 ** Math.floor(rand() * 10 - 6));
    if (f === 0) continue;
    const next = fromBits(bitsOf(f) + 1);
    const mid = (f + next) / 2;
    out.push(String(mid), mid.toPrecision(17), mid.toPrecision(21), (mid * (1 + 2 ** -52)).toString(), (mid * (1 - 2 ** -52)).toString());
  }
  // Around powers of two, where the spacing changes.
  for (let e = -30; e <= 30; e++) {
    const p = 2 ** e;
    const below = fromBits(bitsOf(p) - 1);
    for (const x of [p, below, (p + below) / 2, (p + fromBits(bitsOf(p) + 1)) / 2]) out.push(String(x), x.toPrecision(18), (-x).toString());
  }
  return out;
}

describe('splitJsonEmbedding', () => {
  it('turns every number into Math.fround(Number(text))', () => {
    const texts = numberTexts(7);
    for (let i = 0; i < texts.length; i += 97) {
      const chunk = texts.slice(i, i + 97);
      const doc = `{"id":"a","embedding":[${chunk.join(',')}]}`;
      const split = splitJsonEmbedding(Buffer.from(doc), 'embedding');
      expect(split, doc.slice(0, 200)).not.toBeNull();
      const want = Float32Array.from(chunk.map((t) => Number(t)));
      const got = split!.values;
      expect(got.length).toBe(want.length);
      for (let k = 0; k < want.length; k++) {
        if (!Object.is(got[k], want[k])) throw new Error(`${chunk[k]}: got ${got[k]}, want ${want[k]}`);
      }
      expect(JSON.parse(split!.rest)).toEqual({ id: 'a', embedding: [] });
    }
  });

  it('leaves documents it does not take to JSON.parse', () => {
    const declined = [
      '[1,2]',
      '{"id":"a"}',
      '{"id":"a","embedding":null}',
      '{"id":"a","embedding":[1,"2"]}',
      '{"id":"a","embedding":[1,[2]]}',
      '{"id":"a","embedding":[1,2],"embedding":[3]}',
      '{"id":"a","embedd\\u0069ng":[3],"embedding":[1]}',
      '{"id":"a","embedding":[01]}',
      '{"id":"a","embedding":[1.]}',
      '{"id":"a","embedding":[.5]}',
      '{"id":"a","embedding":[+1]}',
      '{"id":"a","embedding":[1,]}',
      '{"id":"a","embedding":[1 2]}',
      '{"id":"a","embedding":[NaN]}',
      '{"id":"a","embedding":[1e]}',
      '{"id":"a","embedding":[1,2',
      '{"id":"a","embedding":[-]}',
    ];
    for (const doc of declined) expect(splitJsonEmbedding(Buffer.from(doc), 'embedding'), doc).toBeNull();
  });

  it('finds only the top-level member, past strings, escapes and nesting', () => {
    const doc = '{"note":"\\"embedding\\":[9]","nested":{"embedding":[8],"x":["]"]},"embedding" :\t[ 1 , 2.5e0 ]\n, "tail":[{"a":"}"}]}';
    const split = splitJsonEmbedding(Buffer.from(doc), 'embedding')!;
    expect(Array.from(split.values)).toEqual([1, 2.5]);
    expect(JSON.parse(split.rest)).toEqual({ ...JSON.parse(doc), embedding: [] });
  });
});

describe('decodeKafkaRecords JSON: fast path and JSON.parse agree', () => {
  const options: KafkaDecodeOptions = { idField: 'id', embeddingField: 'embedding', metadataFields: ['m'], idType: 'int64', dim: 3 };
  const record = (value: string, offset: number): KafkaRecord => ({ topic: 't', partition: 0, offset: String(offset), key: null, value: Buffer.from(value), headers: {}, timestamp: '0' });

  /** What the ordinary path makes of a document: JSON.parse of the whole text. */
  function expected(doc: string): { error: string | null; values: number[] | null } {
    let obj: unknown;
    try {
      obj = JSON.parse(doc);
    } catch (err) {
      return { error: `invalid JSON (${(err as Error).message})`, values: null };
    }
    const e = (obj as { embedding?: unknown }).embedding;
    return { error: null, values: Array.isArray(e) ? Array.from(Float32Array.from(e as number[])) : null };
  }

  it('on valid, invalid and malformed documents', () => {
    const docs = [
      '{"id":1,"embedding":[0.1,0.2,0.3],"m":"x"}',
      '{"id":9007199254740993,"embedding":[1,2,3],"m":18446744073709551615}',
      '{"id":"12","embedding":[1e-3,-0,3.4028235e38]}',
      '{"id":1,"embedding":[1,2,3]} x',
      '{"id":1,"embedding":[1,2,3],}',
      '{"id":1,"embedding":[1,2,3],"m":tru}',
      '{"id":1,"embedding":[1,2,3],"m":"\\x"}',
      '{"id":1 "embedding":[1,2,3]}',
      '{"id":[1,"embedding":[1,2,3]}',
      '{"id":{"a":[}],"embedding":[1,2,3]}',
      '{"id":1,"embedding":[1,2,3],"m":{"embedding":[4]}}',
      '\ufeff{"id":1,"embedding":[1,2,3]}',
      ' {"id":1,"embedding":[1,2,3]} ',
    ];
    const decoded = decodeKafkaRecords(docs.map(record), options);
    docs.forEach((doc, i) => {
      const want = expected(doc);
      const err = decoded.raw.rowErrors?.[i] ?? null;
      if (want.error !== null) {
        expect(err, doc).toBe(want.error);
        return;
      }
      if (err !== null) return; // valid JSON refused for its fields: same either way (not the fast path's concern)
      const values = Array.from(decoded.raw.values.subarray(decoded.raw.offsets[i]!, decoded.raw.offsets[i + 1]!));
      expect(values, doc).toEqual(want.values);
    });
    expect(decoded.raw.ids[1]).toBe('9007199254740993');
    expect(decoded.raw.metadata.m![1]).toBe(18446744073709551615n);
  });
});
