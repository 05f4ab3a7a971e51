import type { ColumnSpec } from '../sinks/parquet/index.js';
import type { IdType, MetadataValue } from '../shared/types.js';

/** The id column in its input type (int64 ids travel as canonical strings). */
export function idColumn(name: string, ids: readonly string[], idType: IdType): ColumnSpec {
  if (idType === 'int64') return { name, type: 'int64', values: BigInt64Array.from(ids, (s) => BigInt(s)) };
  return { name, type: 'utf8', values: ids as string[] };
}

/** Metadata columns written back with the Arrow types they were read with. */
export function metadataColumns(metadata: Readonly<Record<string, MetadataValue[]>>, types: Readonly<Record<string, unknown>>): ColumnSpec[] {
  return Object.entries(metadata).map(([name, values]) => ({ name, type: { arrow: types[name] }, values }) as ColumnSpec);
}
