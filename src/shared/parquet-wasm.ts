import type * as ParquetWasm from 'parquet-wasm';

let loading: Promise<typeof ParquetWasm> | undefined;

/**
 * parquet-wasm, loaded on first use: a run on local Parquet reads with DuckDB and writes with
 * `writeParquetFast`, so most CLI runs never need the module (or its WebAssembly) at all.
 */
export function loadParquetWasm(): Promise<typeof ParquetWasm> {
  return (loading ??= import('parquet-wasm'));
}
