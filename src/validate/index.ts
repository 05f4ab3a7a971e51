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
  if (end - start !== dim) return `wrong dimension: ${end - start}, expected ${dim}`;
  let sumSq = 0;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) return `embedding has ${Number.isNaN(v) ? 'NaN' : 'Inf'} at position ${i - start}`;
    sumSq += v * v;
  }
  if (sumSq === 0) return 'embedding is the zero vector';
  return null;
}

/**
 * Split a decoded batch into valid clips (a dense n × dim matrix) and refused rows with their
 * reason. Stateful across batches: the first valid row fixes the dimension, ids must be unique.
 */
export function validateRawBatch(
  raw: RawClipBatch,
  state: ValidationState,
  options: {
    /**
     * The caller owns `raw.values` and will not read them again: when every row is valid and the
     * rows lie back to back, the clips use them in place instead of a copy (normalization then
     * writes into them).
     */
    readonly ownsValues?: boolean;
  } = {},
): { ok: ClipBatch; rejected: RejectedClip[] } {
  const n = raw.ids.length;
  const rejected: RejectedClip[] = [];
  const keep: number[] = [];
  const rowErrors = (raw as RawClipBatch & { rowErrors?: (string | null)[] }).rowErrors;
  const metaNames = Object.keys(raw.metadata);
  for (let i = 0; i < n; i++) {
    const id = raw.ids[i] ?? null;
    const start = raw.offsets[i]!;
    const end = raw.offsets[i + 1]!;
    if (state.dim === undefined && !raw.embeddingNull[i] && end > start && !rowErrors?.[i]) state.dim = end - start;
    let reason: string | null = rowErrors?.[i] ?? null;
    if (!reason && (id === null || id === '')) reason = 'id is null or empty';
    if (!reason && raw.embeddingNull[i]) reason = 'embedding is null';
    if (!reason) reason = embeddingProblem(raw.values, start, end, state.dim!);
    if (!reason && state.seenIds.has(id!)) reason = `duplicate id ${id}`;
    if (reason) {
      const metadata: Record<string, MetadataValue> = {};
      for (const name of metaNames) metadata[name] = raw.metadata[name]![i] ?? null;
      rejected.push({
        id,
        reason,
        file: raw.origin.file ?? null,
        row: raw.origin.firstRow !== undefined ? raw.origin.firstRow + i : null,
        embedding: raw.embeddingNull[i] ? null : raw.values.slice(start, end),
        metadata,
      });
      continue;
    }
    state.seenIds.add(id!);
    keep.push(i);
  }
  const dim = state.dim ?? 0;
  // Valid rows all have `dim` values, so all rows valid and offsets from 0 means back to back.
  const inPlace = options.ownsValues === true && keep.length === n && raw.offsets[0] === 0;
  let embeddings: Float32Array;
  if (inPlace) embeddings = raw.values.subarray(0, n * dim);
  else {
    embeddings = new Float32Array(keep.length * dim);
    keep.forEach((row, j) => embeddings.set(raw.values.subarray(raw.offsets[row]!, raw.offsets[row]! + dim), j * dim));
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
