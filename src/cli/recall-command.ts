import type { Command } from 'commander';
import { parseEps } from '../identify/index.js';
import { DEFAULT_RECALL_EPS, DEFAULT_RECALL_SAMPLE, DEFAULT_WHAT_IF_MARGINS, measureRecall, type RecallResult } from '../recall/index.js';
import { InputError } from '../shared/errors.js';
import { parseCount } from './inspect-command.js';
import type { CliContext } from './run-command.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function formatRecallText(r: RecallResult, output: string): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const probe = r.probe > 1 ? `--probe ${r.probe} --probe-margin ${r.probe_margin}` : '--probe 1';
  const lines = [
    `semdedup recall: ${output} (${probe}) — pair recall ${pct(r.recall)} at eps ${r.eps} (cos >= ${Number(r.threshold.toFixed(12))})`,
    `  ${r.pairs} pairs touch the ${r.sample} sampled clips (of ${r.rows}); covered ${r.covered} (same cluster ${r.covered_same_cluster}, by probing ${r.covered_by_probe}), missed ${r.missed}`,
    `  brute force on ${r.source} with the ${r.backend} kernel, seed ${r.seed}, ${r.seconds.toFixed(2)}s; recorded in summary.json`,
    '',
    '  what if --probe 2 (same centroids):',
    '    margin    recall  probed  est. pairs ×',
    ...r.what_if.map((w) => `    ${String(w.probe_margin).padEnd(7)} ${pct(w.recall).padStart(8)} ${pct(w.probed_fraction).padStart(7)}  ${w.est_pairs_ratio.toFixed(2).padStart(11)}`),
  ];
  return lines.join('\n') + '\n';
}

export function registerRecallCommand(program: Command, ctx: CliContext): void {
  program
    .command('recall')
    .description("pair recall of a finished run's clustering: the share of near-duplicate pairs (cos >= 1 - eps, exact brute force on a seeded sample of clips against all clips) that the run compared; recorded in summary.json")
    .requiredOption('--output <dir>', 'output folder of a `semdedup run`')
    .option('--input <path>', "read embeddings from the run's input (normalized like the run) instead of kmeans_results; repeat for several", collect)
    .option('--sample <n>', `clips sampled (default: ${DEFAULT_RECALL_SAMPLE}; all when the run has fewer)`)
    .option('--eps <e>', `pairs are cos >= 1 - eps (default: the run's eps, else ${DEFAULT_RECALL_EPS})`)
    .option('--seed <n>', "seed of the sample (default: the run's seed)")
    .option('--backend <name>', "kernel for the brute force: cpu, gpu or js (default: the run's backend)")
    .option('--margins <m1,m2,...>', `probe margins of the what-if table (default: ${DEFAULT_WHAT_IF_MARGINS.join(',')})`)
    .option('--json', 'print the result as JSON (the same object as summary.json "recall")')
    .addHelpText(
      'after',
      `
A pair is covered when its two clips share a compared set: the same cluster, or with --probe 2 one
of each other's probed clusters. recall = covered / pairs. The what-if table shows the recall a
\`run --probe 2 --probe-margin m\` would reach on the same centroids, the share of clips it would
probe, and its estimated pairs compared relative to --probe 1.

Examples:
  semdedup recall --output out/sample
  semdedup recall --output out/ --sample 5000 --eps 0.02 --json`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const backend = opts.backend === undefined ? undefined : String(opts.backend);
      if (backend !== undefined && backend !== 'cpu' && backend !== 'gpu' && backend !== 'js') {
        throw new InputError(`--backend must be cpu, gpu or js, got ${backend}`, { context: { field: 'backend' } });
      }
      const margins =
        opts.margins === undefined
          ? undefined
          : String(opts.margins)
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
              .map((s) => {
                const v = Number(s);
                if (!Number.isFinite(v) || v < 0) throw new InputError(`--margins: ${s} is not a number >= 0`, { context: { field: 'margins' } });
                return v;
              });
      const result = await measureRecall(String(opts.output), {
        input: opts.input as string[] | undefined,
        sample: opts.sample === undefined ? undefined : parseCount(opts.sample, '--sample', 1),
        eps: opts.eps === undefined ? undefined : parseEps(opts.eps),
        seed: opts.seed === undefined ? undefined : parseCount(opts.seed, '--seed'),
        backend,
        margins,
        logger: ctx.logger,
      });
      if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else process.stdout.write(formatRecallText(result, String(opts.output)));
    });
}
