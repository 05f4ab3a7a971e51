import type { Command } from 'commander';
import { identifyFromRun, parseEps } from '../identify/index.js';
import type { CliContext } from './run-command.js';

export function registerIdentifyCommand(program: Command, ctx: CliContext): void {
  program
    .command('identify')
    .description("select duplicates at a new eps from a finished run's pairwise table (no recompute): rewrites duplicates/ and updates summary.json")
    .requiredOption('--output <dir>', 'output folder of a `semdedup run` (holds semdedup.duckdb)')
    .requiredOption('--eps <e>', 'duplicates are clips with cosine_sim_score >= 1 - eps (a number in [0, 2]; no default)')
    .option('--json', 'print {output, eps, threshold, rows, duplicates, kept, previous, duplicatesDir} as JSON')
    .addHelpText(
      'after',
      `
duplicates/ is rebuilt under a staging name and swapped in; summary.json's "duplicates" and
"config.eps" are updated. Use \`semdedup inspect\` first to see how many clips each eps removes.

Examples:
  semdedup identify --output out/sample --eps 0.02
  semdedup identify --output out/ --eps 0.005 --json`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const result = await identifyFromRun(String(opts.output), parseEps(opts.eps), { logger: ctx.logger });
      if (opts.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        return;
      }
      const prev = result.previous.eps === null ? 'the run had no eps' : `was ${result.previous.duplicates} at eps ${result.previous.eps}`;
      process.stdout.write(
        `semdedup: ${result.duplicates} duplicates at eps ${result.eps} (cosine_sim_score >= ${Number(result.threshold.toFixed(12))}) of ${result.rows} clips, ${result.kept} kept (${prev})\n` +
          `  wrote ${result.duplicatesDir}; summary.json updated\n`,
      );
    });
}
