/**
 * Clips → Kafka messages, the inverse of `src/sources/kafka/decode.ts` (used by `semdedup
 * produce` and tests): JSON, one clip per message keyed by its id, or Arrow IPC streams of many
 * rows keyed by their first id, each kept under a message-size limit.
 */
import { DataType, Table, tableToIPC } from 'apache-arrow';
import type { Vector } from 'apache-arrow';
import { columnVector } from '../parquet/index.js';
import type { ColumnSpec } from '../parquet/index.js';
import type { MetadataValue, RawClipBatch } from '../../shared/types.js';
import type { KafkaOutMessage } from './sink.js';

const ARROW_STREAM_CONTENT_TYPE = 'application/vnd.apache.arrow.stream';

export interface ClipRecordFields {
  readonly idField: string;
  readonly embeddingField: string;
}

/** One JSON message per row: `{"id", "embedding": [...], ...metadata}`, key = id. */
export function clipMessagesJson(raw: RawClipBatch, fields: ClipRecordFields = { idField: 'id', embeddingField: 'embedding' }): KafkaOutMessage[] {
  const out: KafkaOutMessage[] = [];
  const names = Object.keys(raw.metadata);
  for (let i = 0; i < raw.ids.length; i++) {
    const id = raw.ids[i] ?? null;
    const parts = [`${JSON.stringify(fields.idField)}:${jsonId(id, raw.idType === 'int64')}`];
    const emb = raw.embeddingNull[i] ? null : raw.values.subarray(raw.offsets[i]!, raw.offsets[i + 1]!);
    parts.push(`${JSON.stringify(fields.embeddingField)}:${emb === null ? 'null' : JSON.stringify(Array.from(emb))}`);
    for (const name of names) parts.push(`${JSON.stringify(name)}:${jsonValue(raw.metadata[name]![i] ?? null)}`);
    out.push({ key: id, value: `{${parts.join(',')}}`, headers: { 'content-type': 'application/json' } });
  }
  return out;
}

/** An int64 id as its exact digits (a JSON number, no 2^53 rounding), a string id quoted. */
function jsonId(id: string | null, int64: boolean): string {
  if (id === null) return 'null';
  return int64 ? id : JSON.stringify(id);
}

function jsonValue(v: MetadataValue): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && !Number.isFinite(v)) return 'null';
  return JSON.stringify(v);
}

export interface ArrowMessageOptions extends Partial<ClipRecordFields> {
  /** Arrow types of the metadata columns (from `readInputSchema`); default: inferred from values. */
  readonly metadataTypes?: Readonly<Record<string, unknown>>;
  /** Rows per message at most. Default 1000. */
  readonly maxRows?: number;
  /**
   * Encoded size per message at most, bytes (default 900 000): Kafka refuses a message over the
   * topic's max.message.bytes (1 MiB by default), so large batches are split.
   */
  readonly maxBytes?: number;
}

/** Rows as Arrow IPC stream messages (content-type header), keyed by each message's first id. */
export function clipMessagesArrow(raw: RawClipBatch, options: ArrowMessageOptions = {}): KafkaOutMessage[] {
  const n = raw.ids.length;
  const maxBytes = options.maxBytes ?? 900_000;
  const out: KafkaOutMessage[] = [];
  const avgBytes = 64 + (n > 0 ? (raw.values.length / n) * 4 : 0) + 16 * Object.keys(raw.metadata).length;
  let rows = Math.max(1, Math.min(options.maxRows ?? 1000, Math.floor(maxBytes / avgBytes)));
  for (let start = 0; start < n; ) {
    const end = Math.min(n, start + rows);
    const bytes = encodeArrowRows(raw, start, end, options);
    if (bytes.length > maxBytes && end - start > 1) {
      rows = Math.max(1, Math.floor((end - start) / 2)); // our estimate was low: retry smaller
      continue;
    }
    out.push({ key: raw.ids[start] ?? null, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), headers: { 'content-type': ARROW_STREAM_CONTENT_TYPE } });
    start = end;
  }
  return out;
}

/** Rows [start, end) as one Arrow IPC stream; fixed-size-list embeddings when every row has the same length. */
export function encodeArrowRows(raw: RawClipBatch, start: number, end: number, options: ArrowMessageOptions = {}): Uint8Array {
  const idField = options.idField ?? 'id';
  const embeddingField = options.embeddingField ?? 'embedding';
  const columns: ColumnSpec[] = [{ name: idField, type: raw.idType === 'int64' ? 'int64' : 'utf8', values: raw.ids }];
  const first = raw.offsets[start + 1]! - raw.offsets[start]!;
  let fixed = first > 0;
  for (let i = start; i < end && fixed; i++) fixed = !raw.embeddingNull[i] && raw.offsets[i + 1]! - raw.offsets[i]! === first;
  if (fixed) {
    // Rows are contiguous in `values`: a zero-copy fixed-size-list over them.
    const base = raw.offsets[start]!;
    columns.push({ name: embeddingField, type: 'fixed-list-float32', values: raw.values.subarray(base, base + (end - start) * first), listSize: first });
  } else {
    columns.push({ name: embeddingField, type: 'list-float32', values: raw.values, offsets: raw.offsets, nulls: raw.embeddingNull });
  }
  for (const [name, values] of Object.entries(raw.metadata)) {
    const type = options.metadataTypes?.[name];
    columns.push({ name, type: type instanceof DataType ? { arrow: type } : inferType(values), values });
  }
  const vectors: Record<string, Vector> = {};
  for (const c of columns) {
    const fixedEmb = c.name === embeddingField && fixed;
    vectors[c.name] = fixedEmb ? columnVector(c, 0, end - start) : columnVector(c, start, end);
  }
  return tableToIPC(new Table(vectors), 'stream');
}

function inferType(values: readonly MetadataValue[]): ColumnSpec['type'] {
  const v = values.find((x) => x !== null);
  if (typeof v === 'bigint') return 'int64';
  if (typeof v === 'number') return 'float64';
  if (typeof v === 'boolean') return 'bool';
  return 'utf8';
}
