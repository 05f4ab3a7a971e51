import { Command, CommanderError, Option } from 'commander';
import { formatErrorLine, InputError, SemdedupError } from '../shared/errors.js';
import { createLogger } from '../runtime/logging.js';
import { closeStorage } from '../storage/index.js';
import { registerReplayCommand } from './replay-command.js';
import { registerProduceCommand } from './produce-command.js';
import { registerRunCommand } from './run-command.js';
import { registerStreamCommand } from './stream-command.js';
import { registerInspectCommand } from './inspect-command.js';
import { registerIdentifyCommand } from './identify-command.js';
import { registerExportCommand } from './export-command.js';
import { registerRecallCommand } from './recall-command.js';

/** Exit codes: 0 ok, 1 failure, 2 bad input or usage (message without a stack trace). */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('semdedup')
    .description('Semantic deduplication of video-clip embeddings with NeMo Curator semantics: batch, stream and replay.')
    .addOption(new Option('--verbose', 'print stack traces and debug logs'))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  let verbose = argv.includes('--verbose');
  const logger = createLogger({ level: verbose ? 'debug' : undefined });
  const ctx = { logger, exitCode: 0 };
  registerRunCommand(program, ctx);
  registerStreamCommand(program, ctx);
  registerProduceCommand(program, ctx);
  registerInspectCommand(program, ctx);
  registerIdentifyCommand(program, ctx);
  registerExportCommand(program, ctx);
  registerRecallCommand(program, ctx);
  registerReplayCommand(program, ctx);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    verbose ||= process.env.SEMDEDUP_VERBOSE === '1';
    const line = formatErrorLine(err);
    process.stderr.write(`semdedup: error: ${line}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    else if (!(err instanceof InputError)) process.stderr.write('(run with --verbose for the stack trace)\n');
    if (err instanceof InputError) return 2;
    return err instanceof SemdedupError && err.retriable ? 75 : 1;
  } finally {
    // S3 clients keep sockets open; the process should not wait for them to time out.
    closeStorage();
  }
}
