import type { Logger } from 'pino';

/**
 * Graceful SIGTERM/SIGINT for a job: run `cleanup` (e.g. drop a half-built staging folder so
 * nothing incomplete looks like an output), log what happened, exit 143/130. Returns the
 * function that removes the handlers once the job is done.
 */
export function onTerminate(logger: Logger, what: string, cleanup: () => void | Promise<void>): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.warn({ signal }, `${what} interrupted; removing partial outputs`);
    void Promise.resolve()
      .then(cleanup)
      .catch((err: unknown) => logger.error({ err }, 'cleanup failed'))
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
