import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../runtime/logging.js';
import { sqlString, type Store } from '../store/index.js';
import type { BatchContext } from './context.js';

/** Load pairwise_results into the `pairwise` table (with each clip's centroid). */
export async function materializePairwise(ctx: BatchContext, log: Logger): Promise<void> {
  const glob = join(ctx.stagingDir, 'pairwise_results', '*.parquet');
  await ctx.store!.run(
    `CREATE OR REPLACE TABLE pairwise AS
       SELECT p.id, p.max_id, p.cosine_sim_score, c.centroid
       FROM read_parquet(${sqlString(glob)}) p JOIN clips c USING (id)
       ORDER BY c.centroid, c.rank_pos`,
  );
  log.debug('pairwise table materialized');
  if (ctx.config.eps === undefined) {
    log.info('no --eps: stopping after pairwise (run `semdedup identify --eps E` to pick duplicates)');
    ctx.stopAfter = 'materialize-pairwise';
  }
}

/** duplicates/: ids with cosine_sim_score >= 1 - eps, one sorted column, written by DuckDB. */
export async function writeDuplicates(store: Store, eps: number, dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  // The threshold is compared in double precision against the exact float32 score.
  const where = `cosine_sim_score >= 1 - ${eps}::DOUBLE`;
  await store.run(`COPY (SELECT id FROM pairwise WHERE ${where} ORDER BY id) TO ${sqlString(join(dir, 'part-00000.parquet'))} (FORMAT parquet)`);
  const [row] = await store.rows(`SELECT count(*)::INTEGER AS n FROM pairwise WHERE ${where}`);
  return row!.n as number;
}

export async function identifyDuplicates(ctx: BatchContext, log: Logger): Promise<void> {
  const eps = ctx.config.eps!;
  ctx.duplicates = await writeDuplicates(ctx.store!, eps, join(ctx.stagingDir, 'duplicates'));
  log.info({ eps, duplicates: ctx.duplicates, kept: ctx.rows - ctx.duplicates }, 'duplicates identified');
}
