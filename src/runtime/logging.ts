import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured logs on stderr (stdout is kept for `--json` summaries). One child logger per step:
 * `logger.child({ step: 'pairwise' })`.
 */
export function createLogger(options: { level?: string; pretty?: boolean } = {}): Logger {
  const level = options.level ?? process.env.SEMDEDUP_LOG_LEVEL ?? 'info';
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
