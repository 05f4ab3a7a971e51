import type { ClipBatch, MetadataValue, RawClipBatch } from '../shared/types.js';

/** A refused row, kept whole so nothing is lost: it goes to rejected/ or the dead-letter topic. */
export interface RejectedClip {
  readonly id: string | null;
  readonly reason: string;
  readonly file: string | null;
  readonly row: number | null;
  readonly embedding: Float32Array | null;
  readonly metadata: Record<string, MetadataValue>;
}

export interface ValidationState {
  /** Embedding dimension every row must have; fixed by the first valid row when undefined. */
  dim: number | undefined;
  /** Ids accepted so far (a repeated id is refused: pairwise needs unique ids). */
  readonly seenIds: Set<string>;
}

export function createValidationState(dim?: number): ValidationState {
  return { dim, seenIds: new Set() };
}

/** Why a row's embedding is unusable, or null when it is fine. */
export function embeddingProblem(values: Float32Array, start: number, end: number, dim: number): string | null {
  const checked = checkEmbedding(values, start, end, dim);
  return typeof checked === 'string' ? checked : null;
}

/** `embeddingProblem`, or the row's float64 sum of squares when it is fine (in index order, as `normalizeEmbeddings` sums). */
function checkEmbedding(values: Float32Array, start: number, end: number, dim: number): string | number {
  if (end - start !== dim) return `wrong dimension: ${end - start}, expected ${dim}`;
  let sumSq = 0;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    sumSq += v * v;
  }
  // NaN or ±Inf anywhere makes the sum non-finite (finite float32 squares cannot overflow a
  // float64 sum), so the per-value scan runs only for a bad row, to name the position.
  if (!Number.isFinite(sumSq)) {
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      if (!Number.isFinite(v)) return `embedding has ${Number.isNaN(v) ? 'NaN' : 'Inf'} at position ${i - start}`;
    }
  }
  if (sumSq === 0) return 'embedding is the zero vector';
  return sumSq;
}

/** to[at..at+dim) = from[start..start+dim) / sqrt(sumSq), rounded to float32 as `normalizeEmbeddings` does. */
function writeScaled(from: Float32Array, start: number, to: Float32Array, at: number, dim: number, sumSq: number): void {
  const inv = 1 / Math.sqrt(sumSq);
  for (let k = 0; k < dim; k++) to[at + k] = from[start + k]! * inv;
}

export interface ValidateOptions {
  /**
   * The caller owns `raw.values` and will not read them again: when every row is valid and the
   * rows lie back to back, the clips use them in place instead of a copy (normalization then
   * writes into them).
   */
  readonly ownsValues?: boolean;
  /**
   * Scale the valid rows to unit length, bit for bit as `normalizeEmbeddings` would, but while
   * each row is still in cache from its check (one pass over the floats instead of three).
   */
  readonly normalize?: boolean;
  /**
   * Write the valid rows here (at least rows × dim floats) instead of in place or in a new array;
   * `ok.embeddings` is then its prefix. Lets a caller fill its own store without another copy.
   */
  readonly into?: Float32Array;
}

/**
 * Split a decoded batch into valid clips (a dense n × dim matrix) and refused rows with their
 * reason. Stateful across batches: the first valid row fixes the dimension, ids must be unique.
 */
export function validateRawBatch(raw: RawClipBatch, state: ValidationState, options: ValidateOptions = {}): { ok: ClipBatch; rejected: RejectedClip[] } {
  const n = raw.ids.length;
  const rejected: RejectedClip[] = [];
  const keep: number[] = [];
  const rowErrors = (raw as RawClipBatch & { rowErrors?: (string | null)[] }).rowErrors;
  const metaNames = Object.keys(raw.metadata);
  const { values, offsets } = raw;
  const normalize = options.normalize === true;
  const into = options.into;
  // Normalize kept rows in place as they pass, when the caller gave us the values.
  const scaleInPlace = normalize && options.ownsValues === true && !into;
  // Sums of squares of kept rows, for normalizing them after the copy (values not ours).
  const sums = normalize && !into && !scaleInPlace ? new Float64Array(n) : null;
  for (let i = 0; i < n; i++) {
    const id = raw.ids[i] ?? null;
    const start = offsets[i]!;
    const end = offsets[i + 1]!;
    if (state.dim === undefined && !raw.embeddingNull[i] && end > start && !rowErrors?.[i]) state.dim = end - start;
    let reason: string | null = rowErrors?.[i] ?? null;
    let sumSq = 0;
    if (!reason && (id === null || id === '')) reason = 'id is null or empty';
    if (!reason && raw.embeddingNull[i]) reason = 'embedding is null';
    if (!reason) {
      const checked = checkEmbedding(values, start, end, state.dim!);
      if (typeof checked === 'string') reason = checked;
      else sumSq = checked;
    }
    if (!reason && state.seenIds.has(id!)) reason = `duplicate id ${id}`;
    if (reason) {
      const metadata: Record<string, MetadataValue> = {};
      for (const name of metaNames) metadata[name] = raw.metadata[name]![i] ?? null;
      rejected.push({
        id,
        reason,
        file: raw.origin.file ?? null,
        row: raw.origin.firstRow !== undefined ? raw.origin.firstRow + i : null,
        embedding: raw.embeddingNull[i] ? null : values.slice(start, end),
        metadata,
      });
      continue;
    }
    state.seenIds.add(id!);
    const j = keep.length;
    keep.push(i);
    const dim = end - start;
    if (into) {
      if (normalize) writeScaled(values, start, into, j * dim, dim, sumSq);
      else into.set(values.subarray(start, end), j * dim);
    } else if (scaleInPlace) writeScaled(values, start, values, start, dim, sumSq);
    else if (sums) sums[j] = sumSq;
  }
  const dim = state.dim ?? 0;
  // Valid rows all have `dim` values, so all rows valid and offsets from 0 means back to back.
  const inPlace = options.ownsValues === true && keep.length === n && offsets[0] === 0;
  let embeddings: Float32Array;
  if (into) embeddings = into.subarray(0, keep.length * dim);
  else if (inPlace) embeddings = values.subarray(0, n * dim);
  else {
    embeddings = new Float32Array(keep.length * dim);
    keep.forEach((row, j) => {
      if (sums) writeScaled(values, offsets[row]!, embeddings, j * dim, dim, sums[j]!);
      else embeddings.set(values.subarray(offsets[row]!, offsets[row]! + dim), j * dim);
    });
  }
  const metadata: Record<string, MetadataValue[]> = {};
  for (const name of metaNames) metadata[name] = keep.map((row) => raw.metadata[name]![row] ?? null);
  return {
    ok: { ids: keep.map((row) => raw.ids[row]!), idType: raw.idType, dim, embeddings, metadata, origin: raw.origin },
    rejected,
  };
}

/** Scale every row to unit length in place (float64 sum, float32 result). */
export function normalizeEmbeddings(embeddings: Float32Array, dim: number): Float32Array {
  for (let o = 0; o < embeddings.length; o += dim) {
    let sumSq = 0;
    for (let k = 0; k < dim; k++) sumSq += embeddings[o + k]! * embeddings[o + k]!;
    const inv = 1 / Math.sqrt(sumSq);
    for (let k = 0; k < dim; k++) embeddings[o + k] = embeddings[o + k]! * inv;
  }
  return embeddings;
}
