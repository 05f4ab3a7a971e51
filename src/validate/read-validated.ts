import { concatMap, defaultIfEmpty, lastValueFrom, Subject } from 'rxjs';
import { readRawBatches, type InputSchema } from '../sources/index.js';
import type { ClipBatch, RawClipBatch } from '../shared/types.js';
import { normalizeEmbeddings, validateRawBatch, type RejectedClip, type ValidationState } from './index.js';

export interface ReadValidatedOptions {
  readonly idField: string;
  readonly embeddingField: string;
  readonly metadataFields: readonly string[];
  readonly batchRows: number;
  readonly schema: InputSchema;
  readonly reader?: 'duckdb' | 'parquet-wasm';
  /** Normalize embeddings to unit length (default true). False for data a run already normalized. */
  readonly normalize?: boolean;
}

/**
 * Read files as record batches, validate and normalize each, and hand valid clips to `onBatch`
 * one batch at a time (pull-based: the reader waits for `onBatch` to finish). Returns the
 * refused rows; `onRaw` sees every decoded batch (progress).
 */
export async function forEachValidBatch(
  files: readonly string[],
  options: ReadValidatedOptions,
  state: ValidationState,
  onBatch: (batch: ClipBatch) => Promise<void>,
  onRaw?: (raw: RawClipBatch) => void,
): Promise<RejectedClip[]> {
  const rejected: RejectedClip[] = [];
  const demand = new Subject<void>();
  await lastValueFrom(
    readRawBatches(files, { ...options, demand, initialDemand: 2 }).pipe(
      concatMap(async (raw) => {
        onRaw?.(raw);
        // Each decoded batch is fresh memory, so valid rows are normalized in place.
        const { ok, rejected: refused } = validateRawBatch(raw, state, { ownsValues: true });
        rejected.push(...refused);
        if (ok.ids.length > 0) {
          // Re-normalizing a float32 unit vector can move its last bits: skip it when asked.
          if (options.normalize !== false) normalizeEmbeddings(ok.embeddings, ok.dim);
          await onBatch(ok);
        }
        demand.next();
      }),
      defaultIfEmpty(undefined),
    ),
  );
  return rejected;
}
