/**
 * Helpers for the integration tests that run `bin/semdedup.mjs` as a process: spawn it and
 * collect its output, wait for a log line, poll until something holds.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'semdedup.mjs');

export interface CliRun {
  readonly child: ChildProcess;
  /** stderr lines so far (JSON logs). */
  readonly lines: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }>;
}

/** `semdedup <args>` as a child process; `env` is added to this process's environment. */
export function runCli(args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: string[] = [];
  let stderr = '';
  let stdout = '';
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    child.emit('lines');
  });
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr, stdout })),
  );
  return { child, lines, exited };
}

/** Resolves when `test` holds for a stderr line (checked on every new line). */
export function whenLine(run: CliRun, test: (line: string, index: number) => boolean, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => {
      run.child.off('lines', check);
      reject(new Error(`timed out waiting for a log line; last lines:\n${run.lines.slice(-5).join('\n')}`));
    }, timeoutMs);
    const check = (): void => {
      for (; seen < run.lines.length; seen++) {
        if (test(run.lines[seen]!, seen)) {
          clearTimeout(timer);
          run.child.off('lines', check);
          resolve();
          return;
        }
      }
    };
    run.child.on('lines', check);
    check();
  });
}

/** Polls `probe` every `everyMs` until it returns something (a throw counts as not yet). */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
