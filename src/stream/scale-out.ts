/**
 * `semdedup stream --role router|worker` (docs/SCALING.md): dispatch to the stage and print its
 * summary. `--role all` stays `runStream` (src/stream/run.ts).
 */
import type { Logger } from '../runtime/logging.js';
import type { StreamConfig } from '../shared/stream-config.js';
import { runRouter } from './router.js';
import type { RouterSummary } from './router.js';
import { runWorker } from './worker.js';
import type { WorkerSummary } from './worker.js';

export type ScaleOutSummary = RouterSummary | WorkerSummary;

export async function runScaleOutRole(config: StreamConfig, hooks: { logger: Logger; signal?: AbortSignal }): Promise<ScaleOutSummary> {
  return config.role === 'router' ? runRouter(config, hooks) : runWorker(config, hooks);
}

export function printScaleOutSummary(s: ScaleOutSummary): void {
  const t = Object.entries(s.timings).map(([k, v]) => `${k} ${v.toFixed(2)}s`).join(', ');
  const stopped = s.stopped === 'end' ? 'reaching the end offsets' : 'signal';
  if (s.role === 'router') {
    process.stdout.write(
      `semdedup stream --role router: ${s.clipsIn} clips in (${s.clipsPerSecond}/s), routed as ${s.internalRecords} records to ${s.internalTopic} (${s.internalPartitions} partitions), ` +
        `${s.deadLetters} rows dead-lettered; ${s.checkpoints} checkpoints; stopped by ${stopped}\n  time: ${s.seconds.toFixed(2)}s (${t})\n`,
    );
  } else {
    process.stdout.write(
      `semdedup stream --role worker: ${s.clipsIn} clips in (${s.clipsPerSecond}/s), ${s.replayedClips} replays skipped, ${s.rebuiltClips} rebuilt, ` +
        `${s.verdictsOut} duplicate verdicts out (+${s.verdictsRepublished} re-published), ${s.deadLetters} dead-lettered; ` +
        `owns partitions [${s.ownedPartitions.join(', ')}] holding ${s.stateSize} clips; ${s.checkpoints} checkpoints; stopped by ${stopped}\n  time: ${s.seconds.toFixed(2)}s (${t})\n`,
    );
  }
}
