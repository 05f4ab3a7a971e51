/**
 * JSONL source: one JSON object per line, `{"id": ..., "embedding": [...], ...metadata}`.
 * Lines are streamed (pull-based, so a slow consumer pauses the file read) into RawClipBatches.
 * A line that cannot be decoded is still emitted, with a `rowErrors` entry, so validation refuses
 * it with that reason and nothing is lost silently. Records are numbered by non-blank line
 * (0-based `row`); messages also give the 1-based line number.
 */
import type { Readable } from 'node:stream';
import { Bool, DataType, Float64, Int64, Utf8 } from 'apache-arrow';
import { InputError, SemdedupError } from '../../shared/errors.js';
import { storageFor, type StorageOptions } from '../../storage/index.js';
import type { IdType, MetadataValue, RawClipBatch } from '../../shared/types.js';
import type { FileInspection, InputFieldOptions } from '../index.js';

export const DEFAULT_BATCH_ROWS = 8192;
/** Records read from the start of each file to infer its id and metadata types. */
const SAMPLE_RECORDS = 1000;

interface JsonlLine {
  readonly text: string;
  /** 1-based line number in the file. */
  readonly lineNo: number;
}

/** Non-blank lines of a file (local or `s3://`), read in chunks only as fast as they are consumed. */
export async function* readJsonlLines(file: string, storage?: StorageOptions): AsyncGenerator<JsonlLine> {
  let stream: Readable | undefined;
  const decoder = new TextDecoder('utf-8');
  let rest = '';
  let lineNo = 0;
  try {
    stream = await storageFor(file, storage).openReadStream(file);
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true });
      let start = 0;
      let nl: number;
      while ((nl = rest.indexOf('\n', start)) >= 0) {
        const text = rest.slice(start, nl);
        start = nl + 1;
        lineNo++;
        const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
        if (trimmed.trim() !== '') yield { text: trimmed, lineNo };
      }
      rest = rest.slice(start);
    }
    rest += decoder.decode();
    lineNo++;
    if (rest.trim() !== '') yield { text: rest.endsWith('\r') ? rest.slice(0, -1) : rest, lineNo };
  } catch (cause) {
    if (cause instanceof SemdedupError) throw cause;
    throw new InputError(`cannot read input file ${file}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
      context: { file },
    });
  } finally {
    stream?.destroy();
  }
}

type JsonKind = 'string' | 'bool' | 'int' | 'float' | 'other';

function kindOf(v: unknown): JsonKind {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  return 'other';
}

/**
 * Infer a file's types from its first records: ids (string or integer), metadata (the most common
 * of string, bool, number; numbers are int64 when every sampled one is an integer, else float64)
 * and embedding lengths.
 */
export async function inspectJsonlFile(file: string, fields: InputFieldOptions): Promise<FileInspection> {
  let records = 0;
  let objects = 0;
  let firstProblem: string | undefined;
  let idType: IdType | undefined;
  let idSeen = false;
  let embSeen = false;
  const seenKeys = new Set<string>();
  const kinds = new Map<string, Map<JsonKind, number>>(fields.metadataFields.map((f) => [f, new Map<JsonKind, number>()]));
  const metaSeen = new Set<string>();
  const sampleLengths: number[] = [];
  for await (const { text, lineNo } of readJsonlLines(file, fields.storage)) {
    records++;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      firstProblem ??= `line ${lineNo}: invalid JSON (${(err as Error).message})`;
      if (records >= SAMPLE_RECORDS) break;
      continue;
    }
    if (!isPlainObject(obj)) {
      firstProblem ??= `line ${lineNo}: not a JSON object`;
      if (records >= SAMPLE_RECORDS) break;
      continue;
    }
    objects++;
    for (const k of Object.keys(obj)) if (seenKeys.size < 50) seenKeys.add(k);
    if (fields.idField in obj) {
      idSeen = true;
      const id = obj[fields.idField];
      if (idType === undefined && id !== null) {
        const k = kindOf(id);
        if (k === 'string') idType = 'string';
        else if (k === 'int') idType = 'int64';
      }
    }
    if (fields.embeddingField in obj) {
      embSeen = true;
      const e = obj[fields.embeddingField];
      if (Array.isArray(e) && e.length > 0) sampleLengths.push(e.length);
    }
    for (const name of fields.metadataFields) {
      if (!(name in obj)) continue;
      metaSeen.add(name);
      const v = obj[name];
      if (v !== null) {
        const m = kinds.get(name)!;
        const k = kindOf(v);
        m.set(k, (m.get(k) ?? 0) + 1);
      }
    }
    if (records >= SAMPLE_RECORDS) break;
  }
  const present = [...seenKeys].join(', ');
  if (records > 0 && objects === 0) {
    throw new InputError(`input file ${file} is not JSONL (${firstProblem ?? 'no JSON object'})`, { context: { file } });
  }
  const sampled = `in its first ${Math.min(records, SAMPLE_RECORDS)} records`;
  if (records > 0 && !idSeen) {
    throw new InputError(`input file ${file} has no id field "${fields.idField}" ${sampled} (fields: ${present})`, {
      context: { file, field: fields.idField },
    });
  }
  if (records > 0 && !embSeen) {
    throw new InputError(
      `input file ${file} has no embedding field "${fields.embeddingField}" ${sampled} (fields: ${present})`,
      { context: { file, field: fields.embeddingField } },
    );
  }
  const metadataTypes: Record<string, DataType> = {};
  for (const name of fields.metadataFields) {
    if (records > 0 && !metaSeen.has(name)) {
      throw new InputError(`input file ${file} has no metadata field "${name}" ${sampled} (fields: ${present})`, {
        context: { file, field: name },
      });
    }
    // The most common JSON type wins; values of another type become row errors when read.
    const ks = kinds.get(name)!;
    const count = (k: JsonKind): number => ks.get(k) ?? 0;
    const groups: [string, number][] = [
      ['string', count('string')],
      ['bool', count('bool')],
      ['number', count('int') + count('float')],
      ['other', count('other')],
    ];
    const top = groups.reduce((best, g) => (g[1] > best[1] ? g : best), ['string', 0] as [string, number]);
    if (top[0] === 'other') {
      throw new InputError(`input file ${file}: metadata field "${name}" holds objects or arrays; supported: string, number, bool`, {
        context: { file, field: name },
      });
    }
    metadataTypes[name] =
      top[0] === 'number' ? (count('float') > 0 ? new Float64() : new Int64()) : top[0] === 'bool' ? new Bool() : new Utf8();
  }
  return {
    file,
    format: 'jsonl',
    idType: idType ?? 'string',
    idTypeKnown: idType !== undefined,
    metadataTypes,
    inferredTypes: true,
    hasRows: records > 0,
    sampleLengths,
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The digits of an integer field as written in the line (JSON.parse rounds beyond 2^53). */
function rawIntegerText(line: string, field: string): string | null {
  const esc = field.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`"${esc}"\\s*:\\s*(-?\\d+)\\s*[,}]`).exec(line);
  return m ? m[1]! : null;
}

function integerText(v: number, line: string, field: string): string {
  if (Number.isSafeInteger(v)) return String(v);
  return rawIntegerText(line, field) ?? BigInt(v).toString();
}

/** Growable float32 buffer for concatenated embeddings. */
class FloatBuffer {
  #data: Float32Array;
  length = 0;
  constructor(capacity: number) {
    this.#data = new Float32Array(Math.max(16, capacity));
  }
  push(values: readonly unknown[]): boolean {
    if (this.length + values.length > this.#data.length) {
      const next = new Float32Array(Math.max(this.#data.length * 2, this.length + values.length));
      next.set(this.#data.subarray(0, this.length));
      this.#data = next;
    }
    const start = this.length;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number') {
        this.length = start;
        return false;
      }
      this.#data[start + i] = v;
    }
    this.length += values.length;
    return true;
  }
  take(): Float32Array {
    return this.#data.slice(0, this.length);
  }
}

export interface JsonlReadOptions {
  readonly batchRows?: number;
  /** Id type of the whole input (from `readInputSchema`); ids of another JSON type are refused. */
  readonly idType: IdType;
  /** Metadata types of the whole input; values are emitted to match them. */
  readonly metadataTypes: Readonly<Record<string, unknown>>;
  /** Expected dimension, only to size buffers. */
  readonly dim?: number;
}

/** Stream one JSONL file as RawClipBatches of at most `batchRows` records. */
export async function* iterateJsonlFile(
  file: string,
  fields: InputFieldOptions,
  options: JsonlReadOptions,
): AsyncGenerator<RawClipBatch> {
  const batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
  const metaNames = fields.metadataFields;
  const metaKinds = metaNames.map((name) => metadataKind(options.metadataTypes[name]));
  let firstRow = 0;
  let ids: (string | null)[] = [];
  let rowErrors: (string | null)[] = [];
  let anyError = false;
  let nulls: number[] = [];
  let ends: number[] = [];
  let meta: MetadataValue[][] = metaNames.map(() => []);
  let values = new FloatBuffer(batchRows * (options.dim ?? 256));

  const flush = (): RawClipBatch => {
    const n = ids.length;
    const offsets = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) offsets[i + 1] = ends[i]!;
    const metadata: Record<string, MetadataValue[]> = {};
    metaNames.forEach((name, j) => (metadata[name] = meta[j]!));
    const batch: RawClipBatch = {
      ids,
      idType: options.idType,
      values: values.take(),
      offsets,
      embeddingNull: Uint8Array.from(nulls),
      metadata,
      origin: { file, firstRow },
      ...(anyError ? { rowErrors } : {}),
    };
    firstRow += n;
    ids = [];
    rowErrors = [];
    anyError = false;
    nulls = [];
    ends = [];
    meta = metaNames.map(() => []);
    values = new FloatBuffer(batchRows * (options.dim ?? 256));
    return batch;
  };

  for await (const { text, lineNo } of readJsonlLines(file, fields.storage)) {
    const problems: string[] = [];
    let obj: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(text);
      if (isPlainObject(parsed)) obj = parsed;
      else problems.push('not a JSON object');
    } catch (err) {
      problems.push(`invalid JSON (${(err as Error).message})`);
    }
    let id: string | null = null;
    let embNull = 1;
    if (obj) {
      // id
      if (!(fields.idField in obj)) problems.push(`no field "${fields.idField}"`);
      else {
        const v = obj[fields.idField];
        if (v !== null) {
          if (options.idType === 'string' && typeof v === 'string') id = v;
          else if (options.idType === 'int64' && typeof v === 'number' && Number.isInteger(v)) {
            id = integerText(v, text, fields.idField);
          } else {
            problems.push(
              `field "${fields.idField}" is ${JSON.stringify(v)}; this input's ids are ${options.idType === 'string' ? 'strings' : 'integers'}`,
            );
          }
        }
      }
      // embedding
      if (!(fields.embeddingField in obj)) problems.push(`no field "${fields.embeddingField}"`);
      else {
        const e = obj[fields.embeddingField];
        if (Array.isArray(e)) {
          if (values.push(e)) embNull = 0;
          else problems.push(`field "${fields.embeddingField}" has a non-number element`);
        } else if (e !== null) {
          problems.push(`field "${fields.embeddingField}" is not an array`);
        }
      }
    }
    ids.push(id);
    nulls.push(embNull);
    ends.push(values.length);
    metaNames.forEach((name, j) => {
      const v = obj ? obj[name] : undefined;
      meta[j]!.push(v === undefined || v === null ? null : metadataValue(v, metaKinds[j]!, name, text, problems));
    });
    if (problems.length > 0) {
      rowErrors.push(`line ${lineNo}: ${problems.join('; ')}`);
      anyError = true;
    } else {
      rowErrors.push(null);
    }
    if (ids.length >= batchRows) yield flush();
  }
  if (ids.length > 0) yield flush();
}

type MetaKind = 'string' | 'bool' | 'int64' | 'float' | 'other';

function metadataKind(type: unknown): MetaKind {
  if (!(type instanceof DataType)) return 'other';
  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type)) return 'string';
  if (DataType.isBool(type)) return 'bool';
  if (DataType.isInt(type)) return type.bitWidth === 64 ? 'int64' : 'float';
  if (DataType.isFloat(type)) return 'float';
  return 'other';
}

function metadataValue(v: unknown, kind: MetaKind, name: string, line: string, problems: string[]): MetadataValue {
  switch (kind) {
    case 'string':
      if (typeof v === 'string') return v;
      break;
    case 'bool':
      if (typeof v === 'boolean') return v;
      break;
    case 'float':
      if (typeof v === 'number') return v;
      break;
    case 'int64':
      if (typeof v === 'number' && Number.isInteger(v)) return BigInt(integerText(v, line, name));
      break;
    case 'other':
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
      break;
  }
  const expected = kind === 'int64' ? 'an integer' : kind === 'float' ? 'a number' : kind === 'bool' ? 'a bool' : 'a string';
  problems.push(`field "${name}" is ${JSON.stringify(v)}; expected ${expected}`);
  return null;
}
