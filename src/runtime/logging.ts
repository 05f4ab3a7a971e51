import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type prettyModule from 'pino-pretty';

// pino-pretty is loaded only for a terminal; logs to a pipe or file stay JSON without it.
const require = createRequire(import.meta.url);

export type { Logger } from 'pino';

/** Storage credentials, should a config ever be logged (top level or one object down). */
const REDACT = {
  paths: ['accessKeyId', 'secretAccessKey', 'sessionToken'].flatMap((k) => [`storageOptions.${k}`, `*.storageOptions.${k}`]),
  censor: '[redacted]',
};

/**
 * Structured logs on stderr (stdout is kept for `--json` summaries and human summaries). On a
 * terminal they are rendered as readable lines; elsewhere they stay JSON, one object per line.
 * One child logger per step: `logger.child({ step: 'pairwise' })`.
 */
export function createLogger(options: { level?: string; pretty?: boolean } = {}): Logger {
  const level = options.level ?? process.env.SEMDEDUP_LOG_LEVEL ?? 'info';
  const human = options.pretty ?? (Boolean(process.stderr.isTTY) && process.env.SEMDEDUP_LOG_FORMAT !== 'json');
  if (human) {
    const pretty = require('pino-pretty') as typeof prettyModule;
    return pino({ level, base: undefined, redact: REDACT }, pretty({ destination: 2, sync: true, colorize: true, singleLine: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname,step', messageFormat: '{if step}[{step}] {end}{msg}' }));
  }
  return pino({ level, base: undefined, redact: REDACT, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
