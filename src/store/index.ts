import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/**
 * The DuckDB database that materializes a run: `clips` (one row per clip with its centroid and
 * distances), `centroids`, `pairwise`. Bulk loads go through Parquet (`read_parquet`), which
 * DuckDB reads far faster than row-by-row appends.
 */
export class Store {
  readonly #instance: DuckDBInstance;
  readonly connection: DuckDBConnection;

  private constructor(instance: DuckDBInstance, connection: DuckDBConnection) {
    this.#instance = instance;
    this.connection = connection;
  }

  static async open(path: string, options: { threads?: number; memoryLimit?: string } = {}): Promise<Store> {
    const instance = await DuckDBInstance.create(path, {
      threads: String(options.threads ?? 2),
      memory_limit: options.memoryLimit ?? '1GB',
    });
    return new Store(instance, await instance.connect());
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

export const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;
export const sqlIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;
