import type { Command } from 'commander';
import { DEFAULT_PROBE_MARGIN, DEFAULT_STATE_MEMORY_MB } from '../shared/config.js';

/** The options `stream` and `replay` share for their incremental state: probing and its memory budget. */
export function addIncrementalStateOptions(cmd: Command): Command {
  return cmd
    .option('--probe <n>', 'clusters a clip is compared in: 1 = its own (NeMo), 2 = also its second-nearest within --probe-margin, as `run --probe 2` (default: 1)')
    .option('--probe-margin <m>', `with --probe 2: probe a clip when l2 to its second centroid minus l2 to its own is below m (default: ${DEFAULT_PROBE_MARGIN})`)
    .option('--state-memory-mb <mb>', `resident cluster states (embeddings) are kept under this many MiB, the rest is read from the state's DuckDB file when needed (default: ${DEFAULT_STATE_MEMORY_MB})`);
}
