import { Command, CommanderError, Option } from 'commander';
import { formatErrorLine, InputError, SemdedupError } from '../shared/errors.js';
import { createLogger } from '../runtime/logging.js';
import type { CliContext } from './run-command.js';

type Register = (program: Command, ctx: CliContext) => void;

/**
 * The commands, in help order, each loaded on demand: a command module pulls in its stage's
 * dependencies (DuckDB, the S3 client, Kafka, parquet-wasm…), ~0.5 s of module loading in all, so
 * `semdedup run` loads only `run`'s. `--help`, `help` and unknown commands load them all.
 */
const COMMANDS: Readonly<Record<string, () => Promise<Register>>> = {
  run: async () => (await import('./run-command.js')).registerRunCommand,
  stream: async () => (await import('./stream-command.js')).registerStreamCommand,
  produce: async () => (await import('./produce-command.js')).registerProduceCommand,
  inspect: async () => (await import('./inspect-command.js')).registerInspectCommand,
  identify: async () => (await import('./identify-command.js')).registerIdentifyCommand,
  export: async () => (await import('./export-command.js')).registerExportCommand,
  recall: async () => (await import('./recall-command.js')).registerRecallCommand,
  replay: async () => (await import('./replay-command.js')).registerReplayCommand,
};

/** The command named in argv (the first word that is not an option), when it is one of ours. */
function invokedCommand(argv: readonly string[]): string | undefined {
  const word = argv.find((a) => !a.startsWith('-'));
  return word !== undefined && Object.hasOwn(COMMANDS, word) ? word : undefined;
}

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
  try {
    const only = invokedCommand(argv);
    const names = only ? [only] : Object.keys(COMMANDS);
    const registers = await Promise.all(names.map((name) => COMMANDS[name]!()));
    for (const register of registers) register(program, ctx);
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
    // S3 clients keep sockets open; the process should not wait for them to time out. (The
    // storage module is light; the S3 client itself is loaded only when an s3:// path is used.)
    (await import('../storage/index.js')).closeStorage();
  }
}
