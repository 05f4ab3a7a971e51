/**
 * Reading written Parquet back for the writer tests: through parquet-wasm as an Arrow table,
 * column values as plain JS, and our sources' raw batches as rows.
 */
import { readFile } from 'node:fs/promises';
import * as pw from 'parquet-wasm';
import { tableFromIPC } from 'apache-arrow';
import type { Table } from 'apache-arrow';
import type { RawClipBatch } from '../../src/shared/types.js';

/** The whole file through parquet-wasm. */
export async function readArrow(file: string): Promise<Table> {
  const pf = await pw.ParquetFile.fromFile(new Blob([await readFile(file)]));
  try {
    return tableFromIPC((await pf.read()).intoIPCStream());
  } finally {
    pf.free();
  }
}

/** Column values as plain JS (typed rows as arrays) for deep comparison. */
export function columnValues(t: Table, name: string): unknown[] {
  const out: unknown[] = [];
  const col = t.getChild(name)!;
  for (let i = 0; i < col.length; i++) {
    const v = col.get(i) as unknown;
    out.push(v !== null && typeof v === 'object' && 'toArray' in v ? Array.from((v as { toArray(): ArrayLike<unknown> }).toArray()) : v);
  }
  return out;
}

/** Rows [id, embedding | null, ...metadata] of a source's raw batches. */
export async function collect(gen: AsyncGenerator<RawClipBatch>): Promise<unknown[]> {
  const rows: unknown[] = [];
  for await (const b of gen) {
    for (let i = 0; i < b.ids.length; i++) {
      rows.push([b.ids[i], b.embeddingNull[i] ? null : Array.from(b.values.subarray(b.offsets[i]!, b.offsets[i + 1]!)), ...Object.values(b.metadata).map((v) => v[i])]);
    }
  }
  return rows;
}
