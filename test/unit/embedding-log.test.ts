import { mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EmbeddingLog } from '../../src/store/embedding-log.js';
import { InputError } from '../../src/shared/errors.js';

const row = (v: number, dim = 4) => Float32Array.from({ length: dim }, (_, k) => v + k / 10);

describe('EmbeddingLog', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'semdedup-emb-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('appends rows, reads them back by row number, and cuts uncommitted rows on open', async () => {
    const path = join(dir, 'state.embeddings.f32');
    const log = EmbeddingLog.open(path, null, 0);
    expect(log.append([row(1), row(2)])).toBe(0);
    expect(log.append([row(3)])).toBe(2);
    await log.sync();
    log.committed();
    expect(log.append([row(4), row(5)])).toBe(3);
    const back = await log.read([4, 0, 2, 1]);
    expect(back.map((r) => Array.from(r))).toEqual([row(5), row(1), row(3), row(2)].map((r) => Array.from(r)));
    await log.sync(); // on disk, but no transaction counted rows 3 and 4 (a crash before the commit)
    log.closeSync();
    expect(statSync(path).size).toBe(5 * 16);

    const reopened = EmbeddingLog.open(path, 16, 3);
    expect(statSync(path).size).toBe(3 * 16);
    expect(reopened.rows).toBe(3);
    expect(Array.from((await reopened.read([2]))[0]!)).toEqual(Array.from(row(3)));
    // A rolled-back append is cut too, and the next append reuses its rows.
    reopened.append([row(9)]);
    await reopened.rollback();
    expect(statSync(path).size).toBe(3 * 16);
    expect(reopened.append([row(6)])).toBe(3);
    await reopened.sync();
    reopened.committed();
    expect(Array.from((await reopened.read([3]))[0]!)).toEqual(Array.from(row(6)));
    await reopened.close();
  });

  it('refuses a file shorter than the rows the state counts', async () => {
    const path = join(dir, 'state.embeddings.f32');
    const log = EmbeddingLog.open(path, null, 0);
    log.append([row(1), row(2)]);
    await log.sync();
    await log.close();
    truncateSync(path, 20);
    expect(() => EmbeddingLog.open(path, 16, 2)).toThrow(InputError);
  });
});
