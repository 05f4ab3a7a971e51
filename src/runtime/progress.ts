import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';

// Loaded only when a bar is shown (a TTY): most runs (CI, pipes, benchmarks) never need it.
const require = createRequire(import.meta.url);

export interface Progress {
  start(phase: string, total: number): void;
  increment(by?: number): void;
  stop(): void;
}

/** Progress bars only on a TTY (stderr); elsewhere a no-op, the logs tell the story. */
export function createProgress(enabled = Boolean(process.stderr.isTTY)): Progress {
  if (!enabled) return { start() {}, increment() {}, stop() {} };
  const cliProgress = require('cli-progress') as typeof cliProgressModule;
  let bar: cliProgressModule.SingleBar | null = null;
  return {
    start(phase, total) {
      bar?.stop();
      bar = new cliProgress.SingleBar(
        { format: `${phase.padEnd(12)} [{bar}] {percentage}% | {value}/{total} | {duration_formatted}`, stream: process.stderr, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
    },
    increment(by = 1) {
      bar?.increment(by);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
