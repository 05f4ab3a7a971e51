import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/**
 * The DuckDB database that materializes a run: `clips` (one row per clip with its centroid and
 * distances), `centroids`, `pairwise`. Bulk loads go through Parquet (`read_parquet`), which
 * DuckDB reads far faster than row-by-row appends.
 */
export class Store {
  readonly #instance: DuckDBInstance;
  readonly connection: DuckDBConnection;
  /** The catalog holding the file's tables when attached (appenders name it), else null. */
  readonly catalog: string | null;

  private constructor(instance: DuckDBInstance, connection: DuckDBConnection, catalog: string | null = null) {
    this.#instance = instance;
    this.connection = connection;
    this.catalog = catalog;
  }

  /**
   * `rowGroupSize` (a multiple of 2048) attaches the file with that row group size instead of
   * DuckDB's 122880: a checkpoint rewrites the last, partly filled row group of a table, so small
   * frequent appends (streaming state) cost O(table) each with big groups, O(appended) with small.
   */
  static async open(path: string, options: { threads?: number; memoryLimit?: string; rowGroupSize?: number; checkpointThresholdMb?: number } = {}): Promise<Store> {
    const config = { threads: String(options.threads ?? 2), memory_limit: options.memoryLimit ?? '1GB' };
    if (options.rowGroupSize === undefined) {
      const instance = await DuckDBInstance.create(path, config);
      return new Store(instance, await instance.connect());
    }
    // ROW_GROUP_SIZE is an ATTACH option: attach the file to an in-memory instance and use it.
    const instance = await DuckDBInstance.create(':memory:', config);
    const connection = await instance.connect();
    try {
      await connection.run(`ATTACH ${sqlString(path)} AS ${sqlIdent(ATTACHED)} (ROW_GROUP_SIZE ${Math.floor(options.rowGroupSize)})`);
      await connection.run(`USE ${sqlIdent(ATTACHED)}`);
      // Appends go to the WAL; folding it into the file every 16 MB (the default) rewrote state mid-drain.
      // Until it is folded in, the changed rows also stay in memory (a caller short of it asks for less).
      await connection.run(`SET checkpoint_threshold = '${Math.round(options.checkpointThresholdMb ?? 256)}MB'`);
    } catch (err) {
      connection.closeSync();
      instance.closeSync();
      throw err;
    }
    return new Store(instance, connection, ATTACHED);
  }

  async run(sql: string): Promise<void> {
    await this.connection.run(sql);
  }

  /** Rows as objects with JS values (bigint for BIGINT, number for FLOAT/DOUBLE/INTEGER). */
  async rows(sql: string): Promise<Record<string, unknown>[]> {
    const reader = await this.connection.runAndReadAll(sql);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  }

  /** Columns by name with JS values. */
  async columns(sql: string): Promise<Record<string, unknown[]>> {
    const reader = await this.connection.runAndReadAll(sql);
    const names = reader.columnNames();
    const cols = reader.getColumnsJS();
    return Object.fromEntries(names.map((name, i) => [name, cols[i] as unknown[]]));
  }

  close(): void {
    this.connection.closeSync();
    this.#instance.closeSync();
  }
}

/** Catalog name of a file opened with `rowGroupSize`. */
const ATTACHED = 'semdedup_store';

export const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;
export const sqlIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;
