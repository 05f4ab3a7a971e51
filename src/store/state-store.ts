import { centroidsChecksum } from '../assign/centroids.js';
import type { RankFields } from '../rank/index.js';
import type { IdType, RankSpec } from '../shared/types.js';
import { InputError, invariant } from '../shared/errors.js';
import duckdb from '@duckdb/node-bindings';
import { DuckDBDataChunk } from '@duckdb/node-api';
import type { DuckDBAppender } from '@duckdb/node-api';
import type { MemberChanges, MemberRecord } from '../state/cluster-state.js';
import { EmbeddingLog } from './embedding-log.js';
import { Store, sqlString } from './index.js';

/** A member of a cluster's state with its cluster id, as persisted. */
export interface StoredMember extends MemberRecord {
  readonly centroid: number;
}

/** Where a source resumes: next offset per topic partition (or per file for replay). */
export interface SourcePosition {
  readonly source: string;
  readonly partition: number;
  readonly nextOffset: string;
}

/** What a state folder was built with; a continuation (stream or replay) must agree. */
export interface StateIdentity {
  readonly dim: number;
  readonly clusters: number;
  readonly centroidsChecksum: string;
  readonly rankSpec: string;
  readonly idType: string;
  /** Which verdicts were published depends on eps, so the changelog only continues with the same one. */
  readonly eps: string;
  /** `1`, or `2:<margin>`: which sets a clip was compared in (--probe, --probe-margin). */
  readonly probe: string;
}

/** Multi-probe settings of a state (`--probe`, `--probe-margin`). */
export interface ProbeSettings {
  readonly probe: number;
  readonly probeMargin: number;
}

/** The identity of a state built with these centroids, ranking, id type, eps and probe settings. */
export function stateIdentity(centroids: Float32Array, dim: number, rankSpec: RankSpec, idType: IdType, eps: number, probe?: ProbeSettings): StateIdentity {
  return {
    dim,
    clusters: centroids.length / dim,
    centroidsChecksum: centroidsChecksum(centroids),
    rankSpec: JSON.stringify(rankSpec),
    idType,
    eps: String(eps),
    probe: probeIdentity(probe),
  };
}

/** `--probe 1` (or margin 0, which probes nothing) is `1`; else `2:<margin>`. */
export function probeIdentity(probe?: ProbeSettings): string {
  return probe && probe.probe > 1 && probe.probeMargin > 0 ? `${probe.probe}:${probe.probeMargin}` : '1';
}

/** Identity keys added after states were first written, with the value such older states have. */
const LEGACY_IDENTITY: Readonly<Record<string, string>> = { probe: '1' };

/** Persisted per-clip facts for the engine's --probe 2 fold: one entry of a probed clip. */
export interface StoredProbeEntry {
  readonly id: string;
  readonly centroid: number;
  readonly home: number;
  readonly probe: number;
  readonly rawScore: number;
  readonly rawMaxId: string | null;
  /** Rank fields of rawMaxId (null when none). */
  readonly maxRank: RankFields | null;
}

/** A persisted own entry's raw max, for verdicts read from the store. */
export interface StoredVerdictRow {
  readonly id: string;
  readonly centroid: number;
  /** -1: not probed. */
  readonly probe: number;
  readonly rawScore: number;
  readonly rawMaxId: string | null;
}

const bigintSafe = (_k: string, v: unknown) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v);
const bigintRevive = (_k: string, v: unknown) => (v && typeof v === 'object' && '$bigint' in v ? BigInt((v as { $bigint: string }).$bigint) : v);

/**
 * DuckDB memory for a state file under a state memory budget of `budgetMb`: the same size, at most
 * the 1 GB DuckDB had before budgets (the budget bounds JS-side states, this DuckDB's cache).
 */
export function stateStoreMemoryMb(budgetMb: number): number {
  return Math.min(1024, budgetMb);
}

/**
 * WAL size at which DuckDB folds a state file's WAL into it, for a DuckDB memory limit of
 * `memoryLimitMb`: a quarter of it, between 16 and 256 MB. Rows changed since the last fold stay
 * in DuckDB's memory (a 200k-clip drain under a 256 MB budget held ~80 MB of them by the end with
 * 256 MB); the default budget (1 GB) keeps 256 MB, what drains were tuned with.
 */
export function stateCheckpointThresholdMb(memoryLimitMb: number): number {
  return Math.min(256, Math.max(16, Math.round(memoryLimitMb / 4)));
}

/** Row group size of state files: see `Store.open` (checkpoints stay O(appended rows)). */
const STATE_ROW_GROUP_SIZE = 2048;

/**
 * The members table: one row per (compared set, clip); a clip probed into a second set has two.
 * `emb_row`: the entry's row in the embedding file (`EmbeddingLog`).
 */
const MEMBERS_DDL = (name: string) => `CREATE TABLE ${name} (
      centroid INTEGER NOT NULL, id VARCHAR NOT NULL, home INTEGER NOT NULL, probe INTEGER,
      cosine_dist_to_cent FLOAT, l2_dist_to_cent FLOAT, rank_hash DOUBLE, metadata VARCHAR,
      emb_row INTEGER NOT NULL, raw_score FLOAT, raw_max_id VARCHAR,
      PRIMARY KEY (centroid, id))`;

/** The members table as states before the embedding file had it (embeddings as BLOBs). */
const MEMBERS_WITH_BLOBS_DDL = (name: string) => `CREATE TABLE ${name} (
      centroid INTEGER NOT NULL, id VARCHAR NOT NULL, home INTEGER NOT NULL, probe INTEGER,
      cosine_dist_to_cent FLOAT, l2_dist_to_cent FLOAT, rank_hash DOUBLE, metadata VARCHAR,
      embedding BLOB USING COMPRESSION uncompressed NOT NULL, raw_score FLOAT, raw_max_id VARCHAR,
      PRIMARY KEY (centroid, id))`;

/** The embedding file of the state database at `path`: `state.duckdb` → `state.embeddings.f32`. */
export function embeddingFileOf(path: string): string {
  return `${path.replace(/\.duckdb$/, '')}.embeddings.f32`;
}

const RANK_COLUMNS = 'cosine_dist_to_cent, l2_dist_to_cent, rank_hash, metadata';

/**
 * Streaming state in DuckDB, keyed by (cluster, clip): every member of each compared set with its
 * rank fields, its own cluster (`home`) and probe cluster, its raw max in that set and the row of
 * its embedding in the state's embedding file (`EmbeddingLog`, little-endian float32 rows beside
 * the database); plus source positions. A clip probed into a second cluster (--probe 2) has a row
 * in each. A checkpoint writes changed members, the embedding file's committed length and
 * positions in one transaction, so state and offsets never disagree.
 */
export class StateStore {
  readonly #store: Store;
  readonly #embeddings: EmbeddingLog;
  /** Rows wait in temp.members_raised for the open checkpoint's commit. */
  #raisedPending = false;

  private constructor(store: Store, embeddings: EmbeddingLog) {
    this.#store = store;
    this.#embeddings = embeddings;
  }

  /**
   * `memoryLimitMb`: DuckDB's buffer pool for this file (default 1 GB). Under a state memory budget
   * the caller sizes it too: appended members otherwise stay cached in DuckDB's memory. The WAL is
   * folded in sooner when it is small (`stateCheckpointThresholdMb`).
   */
  static async open(path: string, options: { memoryLimitMb?: number } = {}): Promise<StateStore> {
    const mb = options.memoryLimitMb;
    const memoryLimit = mb === undefined ? undefined : `${Math.max(32, Math.round(mb))}MB`;
    const store = await Store.open(path, { rowGroupSize: STATE_ROW_GROUP_SIZE, memoryLimit, checkpointThresholdMb: mb === undefined ? undefined : stateCheckpointThresholdMb(mb) });
    let embeddings: EmbeddingLog | null = null;
    try {
      await store.run('CREATE TABLE IF NOT EXISTS positions (source VARCHAR, partition INTEGER, next_offset VARCHAR, PRIMARY KEY (source, partition))');
      await store.run('CREATE TABLE IF NOT EXISTS identity (key VARCHAR PRIMARY KEY, value VARCHAR)');
      // One row: the embedding file's row size and the rows committed (the rest is cut off on open).
      await store.run('CREATE TABLE IF NOT EXISTS embedding_file (row_bytes INTEGER, committed_rows INTEGER NOT NULL)');
      const [file] = await store.rows('SELECT row_bytes, committed_rows FROM embedding_file');
      embeddings = EmbeddingLog.open(embeddingFileOf(path), (file?.row_bytes as number | null | undefined) ?? null, (file?.committed_rows as number | undefined) ?? 0);
      await createOrMigrateMembers(store, embeddings);
      await store.run('CREATE TEMP TABLE members_raised (centroid INTEGER, id VARCHAR, raw_score FLOAT, raw_max_id VARCHAR)');
    } catch (err) {
      embeddings?.closeSync();
      store.close();
      throw err;
    }
    return new StateStore(store, embeddings);
  }

  /** Record the identity on first use; refuse a state built with other centroids or ranking. */
  async checkIdentity(identity: StateIdentity, path: string): Promise<void> {
    const rows = await this.#store.rows('SELECT key, value FROM identity');
    if (rows.length === 0) {
      for (const [key, value] of Object.entries(identity)) await this.#store.run(`INSERT INTO identity VALUES ('${key}', '${String(value).replace(/'/g, "''")}')`);
      return;
    }
    const stored: Record<string, string> = Object.fromEntries(rows.map((r) => [r.key as string, r.value as string]));
    for (const [key, value] of Object.entries(identity)) {
      if (!(key in stored) && key in LEGACY_IDENTITY) {
        // A state written before this key existed was built with its legacy value.
        stored[key] = LEGACY_IDENTITY[key]!;
        if (String(value) === stored[key]) await this.#store.run(`INSERT INTO identity VALUES (${sqlString(key)}, ${sqlString(String(value))})`);
      }
      if (stored[key] !== String(value)) {
        throw new InputError(`state was built with ${key} = ${stored[key]}, this run has ${String(value)}; use a new --state folder`, { context: { file: path, field: key } });
      }
    }
  }

  /**
   * Every member of every set (embeddings included), or of one cluster's set. The embeddings of
   * one cluster's load are views valid until the next load (copy them: `ClusterState.restore` does).
   */
  async loadMembers(centroid?: number): Promise<StoredMember[]> {
    // In file order: a cluster's rows lie in one run per checkpoint that touched it.
    const where = centroid === undefined ? '' : ` WHERE centroid = ${Math.trunc(centroid)} ORDER BY emb_row`;
    const cols = await this.#columns(`SELECT centroid, id, home, probe, ${RANK_COLUMNS}, emb_row, raw_score, raw_max_id FROM members${where}`);
    if (!cols) return [];
    const { id, home, probe, raw_score: raw, raw_max_id: rawMax } = cols;
    // Views into one buffer per load (rows next to each other in the file are read together).
    const embeddings = await this.#embeddings.read(cols.emb_row as number[]);
    return id!.map((_, i) => {
      return {
        centroid: cols.centroid![i] as number,
        rank: rankFieldsAt(cols, i, 'id', ''),
        embedding: embeddings[i]!,
        rawScore: raw![i] as number,
        rawMaxId: (rawMax![i] as string | null) ?? null,
        home: home![i] as number,
        probe: (probe![i] as number | null) ?? -1,
      };
    });
  }

  /** Own clips per cluster (a probed-in entry is not counted in its second cluster). */
  async clusterSizes(): Promise<Map<number, { own: number; entries: number }>> {
    const rows = await this.#store.rows('SELECT centroid, count(*) FILTER (WHERE centroid = home)::INTEGER AS own, count(*)::INTEGER AS entries FROM members GROUP BY centroid');
    return new Map(rows.map((r) => [r.centroid as number, { own: r.own as number, entries: r.entries as number }]));
  }

  /** Every clip id in the state, once each (no embeddings read). */
  async loadIds(): Promise<string[]> {
    const cols = await this.#columns('SELECT id FROM members WHERE centroid = home');
    return (cols?.id as string[] | undefined) ?? [];
  }

  /** Both entries of every probed clip, with the rank fields of each entry's raw argmax. */
  async loadProbeEntries(): Promise<StoredProbeEntry[]> {
    const cols = await this.#columns(
      `SELECT m.id, m.centroid, m.home, m.probe, m.raw_score, m.raw_max_id,
              w.cosine_dist_to_cent AS w_cosine_dist_to_cent, w.l2_dist_to_cent AS w_l2_dist_to_cent, w.rank_hash AS w_rank_hash, w.metadata AS w_metadata
         FROM members m LEFT JOIN members w ON w.centroid = m.centroid AND w.id = m.raw_max_id
        WHERE m.probe IS NOT NULL`,
    );
    if (!cols) return [];
    return cols.id!.map((id, i) => {
      const rawMaxId = (cols.raw_max_id![i] as string | null) ?? null;
      return {
        id: id as string,
        centroid: cols.centroid![i] as number,
        home: cols.home![i] as number,
        probe: cols.probe![i] as number,
        rawScore: cols.raw_score![i] as number,
        rawMaxId,
        maxRank: rawMaxId === null ? null : rankFieldsAt(cols, i, 'raw_max_id', 'w_'),
      };
    });
  }

  /**
   * Every own entry's raw max, streamed in DuckDB chunks (about 2048 rows), without embeddings.
   * Run no other statement on this store until the iteration ends.
   */
  async *verdictRows(): AsyncGenerator<StoredVerdictRow[]> {
    const result = await this.#store.connection.stream('SELECT id, centroid, probe, raw_score, raw_max_id FROM members WHERE centroid = home');
    for await (const rows of result.yieldRowObjectJs()) {
      yield rows.map((r) => ({
        id: r.id as string,
        centroid: r.centroid as number,
        probe: (r.probe as number | null) ?? -1,
        rawScore: r.raw_score as number,
        rawMaxId: (r.raw_max_id as string | null) ?? null,
      }));
    }
  }

  /** Columns of a query by name, or null when it returned no rows. */
  async #columns(sql: string): Promise<Record<string, unknown[]> | null> {
    const reader = await this.#store.connection.runAndReadAll(sql);
    const cols = reader.getColumnsJS() as unknown[][];
    const names = reader.columnNames();
    if (cols.length < names.length || (cols[0]?.length ?? 0) === 0) return null; // an empty result yields no column arrays
    return Object.fromEntries(names.map((n, i) => [n, cols[i]!]));
  }

  async loadPositions(): Promise<SourcePosition[]> {
    const rows = await this.#store.rows('SELECT source, partition, next_offset FROM positions');
    return rows.map((r) => ({ source: r.source as string, partition: r.partition as number, nextOffset: r.next_offset as string }));
  }

  /**
   * Persist changed members and source positions atomically (`beginCheckpoint`, `appendChanges`,
   * `commitCheckpoint` in one call). New members are inserted whole (their embeddings appended to
   * the embedding file); stored members only change their raw max, so only that is updated. Rows
   * go in as DuckDB data chunks (bulk copies per column, one call per string), appended inside the
   * transaction.
   */
  async checkpoint(changes: MemberChanges, positions: readonly SourcePosition[]): Promise<void> {
    await this.beginCheckpoint();
    try {
      await this.appendChanges(changes);
      await this.commitCheckpoint(positions);
    } catch (err) {
      await this.abortCheckpoint();
      throw err;
    }
  }

  /** Open the checkpoint's transaction; reads on this store then see what it appended so far. */
  async beginCheckpoint(): Promise<void> {
    await this.#store.run('BEGIN TRANSACTION');
  }

  /**
   * Append changed members inside the open checkpoint (any number of times: an engine under a
   * memory budget writes a cluster's changes before evicting it). Raw-max updates of stored
   * members wait in a temp table until `commitCheckpoint`.
   */
  async appendChanges(changes: MemberChanges): Promise<void> {
    const db = this.#store;
    // Appends are synchronous and join the open transaction.
    if (changes.newRanks.length > 0) {
      // Written by the thread pool meanwhile; durable before the commit that counts the rows.
      const firstRow = this.#embeddings.append(changes.newEmbeddings);
      const appender = await db.connection.createAppender('members', 'main', db.catalog);
      try {
        appendNewMembers(appender, changes, firstRow);
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
    }
    if (changes.raisedIds.length > 0) {
      // A temp table kept for the connection's life, emptied at commit in the same transaction.
      const appender = await db.connection.createAppender('members_raised', 'main', 'temp');
      try {
        appendRaisedMembers(appender, changes);
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
      this.#raisedPending = true;
    }
  }

  /**
   * The embedding rows of every `appendChanges` so far have been written out (not yet synced): the
   * arrays they were views of may be reused.
   */
  async embeddingsWritten(): Promise<void> {
    await this.#embeddings.written();
  }

  /** Apply the raw-max updates, record the positions and the embedding file's length, and commit. */
  async commitCheckpoint(positions: readonly SourcePosition[]): Promise<void> {
    const log = this.#embeddings;
    // The embedding rows this transaction counts are on disk before it commits.
    await log.sync();
    // The rest in one round trip: at a checkpoint every 100 ms each statement's trip through
    // the driver's thread pool is a visible part of the verdict latency.
    const statements: string[] = [];
    if (log.rows !== log.committedRows) {
      statements.push('DELETE FROM embedding_file', `INSERT INTO embedding_file VALUES (${log.rowBytes}, ${log.rows})`);
    }
    if (this.#raisedPending) {
      statements.push('UPDATE members SET raw_score = r.raw_score, raw_max_id = r.raw_max_id FROM temp.main.members_raised r WHERE members.centroid = r.centroid AND members.id = r.id');
      statements.push('DELETE FROM temp.main.members_raised');
    }
    if (positions.length > 0) {
      statements.push(`INSERT OR REPLACE INTO positions VALUES ${positions.map((p) => `(${sqlString(p.source)}, ${p.partition}, ${sqlString(p.nextOffset)})`).join(', ')}`);
    }
    statements.push('COMMIT');
    await this.#store.run(statements.join(';\n'));
    log.committed();
    this.#raisedPending = false;
  }

  /** Roll the open checkpoint back (after a failure; the caller stops). */
  async abortCheckpoint(): Promise<void> {
    await this.#store.run('ROLLBACK').catch(() => {});
    await this.#embeddings.rollback();
    this.#raisedPending = false;
  }

  close(): void {
    this.#store.close();
    this.#embeddings.closeSync();
  }
}

function metadataOf(text: string | null): RankFields['metadata'] {
  return text === null ? {} : JSON.parse(text, bigintRevive);
}

/** Rank fields of row i: id from column `idColumn`, the rest from `<prefix>cosine_dist_to_cent` etc. */
function rankFieldsAt(cols: Record<string, unknown[]>, i: number, idColumn: string, prefix: string): RankFields {
  return {
    id: cols[idColumn]![i] as string,
    cosineDistToCent: cols[`${prefix}cosine_dist_to_cent`]![i] as number,
    l2DistToCent: cols[`${prefix}l2_dist_to_cent`]![i] as number,
    hash: cols[`${prefix}rank_hash`]![i] as number,
    // NULL: no metadata fields (written so since the embedding file; older rows hold '{}').
    metadata: metadataOf(cols[`${prefix}metadata`]![i] as string | null),
  };
}

/**
 * Create the members table, or migrate an older state: one written before multi-probe (`id` as
 * PRIMARY KEY, one row per clip, no home/probe: every row becomes its clip's own, unprobed entry),
 * then one with embeddings as BLOBs (they move to the embedding file, in (centroid, id) order).
 */
async function createOrMigrateMembers(store: Store, embeddings: EmbeddingLog): Promise<void> {
  const catalog = store.catalog ? sqlString(store.catalog) : 'current_database()';
  const columnsOf = async () => (await store.rows(`SELECT column_name FROM duckdb_columns() WHERE database_name = ${catalog} AND schema_name = 'main' AND table_name = 'members'`)).map((c) => c.column_name as string);
  let columns = await columnsOf();
  if (columns.length === 0) {
    await store.run(MEMBERS_DDL('members'));
    return;
  }
  if (!columns.includes('home')) {
    await migrateToMultiProbe(store);
    columns = await columnsOf();
  }
  if (columns.includes('embedding')) await moveEmbeddingsToFile(store, embeddings);
}

async function migrateToMultiProbe(store: Store): Promise<void> {
  await store.run('BEGIN TRANSACTION');
  try {
    await store.run(MEMBERS_WITH_BLOBS_DDL('members_v2'));
    await store.run(`INSERT INTO members_v2 SELECT centroid, id, centroid, NULL, ${RANK_COLUMNS}, embedding, raw_score, raw_max_id FROM members`);
    await store.run('DROP TABLE members');
    await store.run('ALTER TABLE members_v2 RENAME TO members');
    await store.run('COMMIT');
  } catch (err) {
    await store.run('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** A state with embeddings as BLOBs: they go to the (empty) embedding file, the rows get `emb_row`. */
async function moveEmbeddingsToFile(store: Store, embeddings: EmbeddingLog): Promise<void> {
  invariant(embeddings.committedRows === 0, 'a state with embedding BLOBs already counts rows of an embedding file');
  await store.run('BEGIN TRANSACTION');
  try {
    await store.run(MEMBERS_DDL('members_v3'));
    await store.run(`INSERT INTO members_v3 SELECT centroid, id, home, probe, ${RANK_COLUMNS}, (row_number() OVER (ORDER BY centroid, id) - 1)::INTEGER, raw_score, raw_max_id FROM members`);
    const result = await store.connection.stream('SELECT embedding FROM members ORDER BY centroid, id');
    for await (const rows of result.yieldRowObjectJs()) {
      embeddings.append(
        rows.map((r) => {
          const bytes = r.embedding as Uint8Array;
          const copy = new Float32Array(bytes.byteLength / 4);
          new Uint8Array(copy.buffer).set(bytes);
          return copy;
        }),
      );
      await embeddings.sync();
    }
    await store.run('DROP TABLE members');
    await store.run('ALTER TABLE members_v3 RENAME TO members');
    await store.run('DELETE FROM embedding_file');
    if (embeddings.rows > 0) await store.run(`INSERT INTO embedding_file VALUES (${embeddings.rowBytes}, ${embeddings.rows})`);
    await store.run('COMMIT');
    embeddings.committed();
  } catch (err) {
    await store.run('ROLLBACK').catch(() => {});
    await embeddings.rollback();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Data chunks (little-endian hosts only, as the DuckDB Parquet sink)

const T = duckdb.Type;
const NEW_MEMBER_TYPES = [T.INTEGER, T.VARCHAR, T.INTEGER, T.INTEGER, T.FLOAT, T.FLOAT, T.DOUBLE, T.VARCHAR, T.INTEGER, T.FLOAT, T.VARCHAR];
const RAISED_TYPES = [T.INTEGER, T.VARCHAR, T.FLOAT, T.VARCHAR];

/** Rows [start, end) of `values` into a numeric vector, as one bulk copy. */
function copyNumbers(vector: duckdb.Vector, values: ArrayLike<number>, start: number, end: number, Typed: Float32ArrayConstructor | Float64ArrayConstructor | Int32ArrayConstructor): void {
  const out = new Typed(end - start);
  for (let i = start; i < end; i++) out[i - start] = values[i]!;
  duckdb.copy_data_to_vector(vector, 0, out.buffer as ArrayBuffer, 0, out.byteLength);
}

const encoder = new TextEncoder();

/** Rows [start, end) of `values` into a VARCHAR vector; nulls marked invalid. */
function copyStrings(vector: duckdb.Vector, values: readonly (string | null)[], start: number, end: number): void {
  let validity: Uint8Array | null = null;
  for (let i = start; i < end; i++) {
    const s = values[i];
    if (s === null || s === undefined) {
      if (!validity) {
        validity = new Uint8Array(Math.ceil((end - start) / 64) * 8).fill(0xff);
      }
      validity[(i - start) >> 3]! &= ~(1 << ((i - start) & 7));
      continue;
    }
    // The plain assign takes a C string, which would stop at a NUL.
    if (s.includes('\0')) duckdb.vector_assign_string_element_len(vector, i - start, encoder.encode(s));
    else duckdb.vector_assign_string_element(vector, i - start, s);
  }
  if (validity) {
    duckdb.vector_ensure_validity_writable(vector);
    duckdb.copy_data_to_vector_validity(vector, 0, validity.buffer as ArrayBuffer, 0, validity.byteLength);
  }
}

function appendChunks(appender: DuckDBAppender, types: readonly duckdb.Type[], rows: number, fill: (vector: (column: number) => duckdb.Vector, start: number, end: number) => void): void {
  const capacity = duckdb.vector_size();
  const logical = types.map((t) => duckdb.create_logical_type(t));
  for (let start = 0; start < rows; start += capacity) {
    const end = Math.min(rows, start + capacity);
    const chunk = duckdb.create_data_chunk(logical);
    fill((column) => duckdb.data_chunk_get_vector(chunk, column), start, end);
    duckdb.data_chunk_set_size(chunk, end - start);
    appender.appendDataChunk(new DuckDBDataChunk(chunk));
  }
}

/** Rows [start, end) of `values` into an INTEGER vector; negative values are NULL. */
function copyIntsNegativeNull(vector: duckdb.Vector, values: ArrayLike<number>, start: number, end: number): void {
  copyNumbers(vector, values, start, end, Int32Array);
  let validity: Uint8Array | null = null;
  for (let i = start; i < end; i++) {
    if (values[i]! >= 0) continue;
    validity ??= new Uint8Array(Math.ceil((end - start) / 64) * 8).fill(0xff);
    validity[(i - start) >> 3]! &= ~(1 << ((i - start) & 7));
  }
  if (validity) {
    duckdb.vector_ensure_validity_writable(vector);
    duckdb.copy_data_to_vector_validity(vector, 0, validity.buffer as ArrayBuffer, 0, validity.byteLength);
  }
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/** New members; their embeddings are rows `firstRow`, `firstRow` + 1, … of the embedding file. */
function appendNewMembers(appender: DuckDBAppender, c: MemberChanges, firstRow: number): void {
  const ranks = c.newRanks;
  const ids = ranks.map((r) => r.id);
  appendChunks(appender, NEW_MEMBER_TYPES, ranks.length, (vector, start, end) => {
    copyNumbers(vector(0), c.newCentroid, start, end, Int32Array);
    copyStrings(vector(1), ids, start, end);
    copyNumbers(vector(2), c.newHome, start, end, Int32Array);
    copyIntsNegativeNull(vector(3), c.newProbe, start, end);
    const cos = new Float32Array(end - start);
    const l2 = new Float32Array(end - start);
    const hash = new Float64Array(end - start);
    // Most states rank without metadata: NULL rather than 50k '{}' strings per checkpoint.
    const meta: (string | null)[] = new Array(end - start);
    for (let i = start; i < end; i++) {
      const r = ranks[i]!;
      cos[i - start] = r.cosineDistToCent;
      l2[i - start] = r.l2DistToCent;
      hash[i - start] = r.hash;
      meta[i - start] = hasKeys(r.metadata) ? JSON.stringify(r.metadata, bigintSafe) : null;
    }
    duckdb.copy_data_to_vector(vector(4), 0, cos.buffer, 0, cos.byteLength);
    duckdb.copy_data_to_vector(vector(5), 0, l2.buffer, 0, l2.byteLength);
    duckdb.copy_data_to_vector(vector(6), 0, hash.buffer, 0, hash.byteLength);
    copyStrings(vector(7), meta, 0, end - start);
    const rows = new Int32Array(end - start);
    for (let i = start; i < end; i++) rows[i - start] = firstRow + i;
    duckdb.copy_data_to_vector(vector(8), 0, rows.buffer, 0, rows.byteLength);
    copyNumbers(vector(9), c.newRawScore, start, end, Float32Array);
    copyStrings(vector(10), c.newRawMaxId, start, end);
  });
}

function appendRaisedMembers(appender: DuckDBAppender, c: MemberChanges): void {
  appendChunks(appender, RAISED_TYPES, c.raisedIds.length, (vector, start, end) => {
    copyNumbers(vector(0), c.raisedCentroid, start, end, Int32Array);
    copyStrings(vector(1), c.raisedIds, start, end);
    copyNumbers(vector(2), c.raisedRawScore, start, end, Float32Array);
    copyStrings(vector(3), c.raisedRawMaxId, start, end);
  });
}
