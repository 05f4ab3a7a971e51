import type { Command } from 'commander';
import { parseEps } from '../identify/index.js';
import {
  DEFAULT_EPS_GRID,
  DEFAULT_HISTOGRAM_BINS,
  DEFAULT_INSPECT_EPS,
  DEFAULT_SAMPLE_PAIRS,
  DEFAULT_TOP_CLUSTERS,
  formatInspectText,
  inspectRun,
} from '../inspect/index.js';
import { renderInspectHtml, writeReportFile } from '../inspect/report-html.js';
import { InputError } from '../shared/errors.js';
import type { CliContext } from './run-command.js';

/** A non-negative integer flag value, or an InputError naming the flag. */
export function parseCount(value: unknown, flag: string, min = 0): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new InputError(`${flag} must be an integer >= ${min}, got ${String(value)}`);
  return n;
}

export function registerInspectCommand(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description("look at a finished run to choose eps: score histogram, eps table, cluster sizes, top clusters and sample duplicate pairs, read from the run's semdedup.duckdb (nothing is recomputed)")
    .requiredOption('--output <dir>', 'output folder of a `semdedup run` (holds semdedup.duckdb)')
    .option('--report <file.html>', 'also write a self-contained HTML report with plots (no network needed to open it)')
    .option('--json', 'print one JSON object instead of tables: eps_table [{eps, threshold, duplicates, kept, fraction}], histogram, cluster_sizes, top_clusters, sample_pairs')
    .option('--eps-grid <e1,e2,...>', `eps values for the eps table (default: ${DEFAULT_EPS_GRID.join(',')})`)
    .option('--eps <e>', `eps for the top clusters, the sample pairs and the threshold line (default: ${DEFAULT_INSPECT_EPS})`)
    .option('--bins <n>', `histogram bins over [0, 1] (default: ${DEFAULT_HISTOGRAM_BINS})`)
    .option('--top <n>', `clusters listed by duplicates (default: ${DEFAULT_TOP_CLUSTERS})`)
    .option('--samples <n>', `duplicate pairs shown, spread from the closest copies to the threshold (default: ${DEFAULT_SAMPLE_PAIRS})`)
    .addHelpText(
      'after',
      `
eps table: duplicates are clips with cosine_sim_score >= 1 - eps (what \`run --eps\` and
\`identify --eps\` select); kept = rows - duplicates; fraction = kept / rows, the share of the
data set left after removing the duplicates.

Examples:
  semdedup inspect --output out/sample
  semdedup inspect --output out/sample --report out/sample/report.html
  semdedup inspect --output out/sample --json --eps-grid 0.001,0.01,0.1 | jq '.eps_table'
Then: semdedup identify --output out/sample --eps 0.02`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const epsGrid =
        opts.epsGrid === undefined
          ? undefined
          : String(opts.epsGrid)
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
              .map((s) => parseEps(s, '--eps-grid'));
      const report = await inspectRun(String(opts.output), {
        eps: opts.eps === undefined ? undefined : parseEps(opts.eps),
        epsGrid,
        bins: opts.bins === undefined ? undefined : parseCount(opts.bins, '--bins', 1),
        top: opts.top === undefined ? undefined : parseCount(opts.top, '--top'),
        samples: opts.samples === undefined ? undefined : parseCount(opts.samples, '--samples'),
      });
      const reportPath = typeof opts.report === 'string' ? opts.report : undefined;
      if (reportPath) await writeReportFile(reportPath, renderInspectHtml(report));
      if (opts.json) process.stdout.write(JSON.stringify(reportPath ? { ...report, report_html: reportPath } : report, null, 2) + '\n');
      else {
        process.stdout.write(formatInspectText(report));
        if (reportPath) process.stdout.write(`\nreport written to ${reportPath}\n`);
      }
      ctx.logger.debug({ output: report.output, report: reportPath }, 'inspect done');
    });
}
