/**
 * The inspect report as one self-contained HTML file: inline CSS and inline SVG charts, no script,
 * no font or image fetched (a Content-Security-Policy forbids any request), so it opens offline
 * and can be attached to a ticket. Written atomically (temporary name, then rename).
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { InspectReport, JsonValue } from './index.js';
import { clusterSizesSvg, epsCurveSvg, escapeXml as esc, scoreHistogramSvg } from './svg-charts.js';

const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 980px; color: #1f2328; background: #fff; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; margin-top: 0; } .note { color: #57606a; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; } th { background: #f6f8fa; }
td.text { text-align: left; white-space: nowrap; } tr.chosen td { background: #fff8c5; }
.chart { display: block; max-width: 100%; height: auto; margin: 8px 0; }
.chart text { font: 11px system-ui, sans-serif; fill: #57606a; } .chart .axis-label { font-size: 12px; fill: #1f2328; }
.chart .axes line, .chart .tick line { stroke: #57606a; stroke-width: 1; } .chart .tick line.grid { stroke: #eaeef2; }
.chart rect.bar { fill: #0969da; } .chart rect.bar.dup, .chart .legend rect.dup { fill: #cf222e; } .chart rect.bar.kept, .chart .legend rect.kept { fill: #0969da; }
.chart .threshold { stroke: #cf222e; stroke-width: 1.5; stroke-dasharray: 5 4; } .chart .threshold-label { fill: #cf222e; }
.chart .curve { fill: none; stroke: #0969da; stroke-width: 2; } .chart .point { fill: #fff; stroke: #0969da; stroke-width: 2; }
code { background: #f6f8fa; padding: 1px 4px; border-radius: 4px; }
`;

const n = (x: number) => x.toLocaleString('en-US');

function cell(v: JsonValue | undefined): string {
  return v === null || v === undefined ? '<span class="note">∅</span>' : esc(String(v));
}

/** The whole report page. */
export function renderInspectHtml(r: InspectReport, options: { generatedAt?: Date } = {}): string {
  const generated = (options.generatedAt ?? new Date()).toISOString();
  const runEps = r.run.eps === null ? 'the run has no eps yet' : `the run's eps is ${r.run.eps} (${n(r.run.duplicates ?? 0)} duplicates)`;
  const chosen = r.eps_table.find((e) => e.eps === r.eps);
  const epsRows = r.eps_table
    .map(
      (e) =>
        `<tr${e.eps === r.eps ? ' class="chosen"' : ''}><td>${e.eps}</td><td>${e.threshold.toFixed(4)}</td><td>${n(e.duplicates)}</td><td>${n(e.kept)}</td><td>${(e.fraction * 100).toFixed(2)}%</td></tr>`,
    )
    .join('');
  const cs = r.cluster_sizes;
  const topRows = r.top_clusters
    .map((c) => `<tr><td>${c.centroid}</td><td>${n(c.size)}</td><td>${n(c.duplicates)}</td><td>${(c.duplicate_fraction * 100).toFixed(2)}%</td></tr>`)
    .join('');
  const metaHead = r.metadata_columns.map((m) => `<th>${esc(m)}</th><th>${esc(m)} (max_id)</th>`).join('');
  const pairRows = r.sample_pairs
    .map(
      (p) =>
        `<tr><td class="text">${cell(p.id)}</td><td class="text">${cell(p.max_id)}</td><td>${p.cosine_sim_score.toFixed(6)}</td><td>${p.centroid}</td>` +
        r.metadata_columns.map((m) => `<td class="text">${cell(p.metadata[m])}</td><td class="text">${cell(p.max_id_metadata[m])}</td>`).join('') +
        '</tr>',
    )
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>semdedup inspect — ${esc(r.output)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>semdedup inspect</h1>
<p class="sub"><code>${esc(r.output)}</code>: ${n(r.rows)} clips in ${n(r.clusters)} clusters; ${esc(runEps)}.
Generated ${esc(generated)} from <code>semdedup.duckdb</code> (nothing recomputed).</p>

<h2>cosine_sim_score</h2>
<p class="note">Each clip's highest cosine similarity to a clip ranked before it in its cluster (NeMo Curator semantics). Near-copies pile up near 1;
duplicates are the clips at or right of the dashed line, <code>score ≥ 1 − eps</code> (eps ${r.eps}). ${r.histogram.length} bins over [0, 1]; counts on a log scale.</p>
${scoreHistogramSvg(r.histogram, r.eps)}

<h2>Choosing eps</h2>
<p class="note">fraction = kept / rows: the share of the data set left after removing the duplicates at that eps.
Change eps without recomputing: <code>semdedup identify --output ${esc(r.output)} --eps E</code>.</p>
${epsCurveSvg(r.eps_table, r.eps)}
<table id="eps-table"><thead><tr><th>eps</th><th>threshold (1 − eps)</th><th>duplicates</th><th>kept</th><th>fraction kept</th></tr></thead><tbody>${epsRows}</tbody></table>

<h2>Cluster sizes</h2>
<p class="note">${n(cs.clusters)} clusters (${n(cs.non_empty)} non-empty): min ${n(cs.min)}, median ${n(cs.median)}, mean ${cs.mean.toFixed(1)}, max ${n(cs.max)} clips.
Red: duplicates at eps ${r.eps}${chosen ? ` (${n(chosen.duplicates)} in all)` : ''}.</p>
${clusterSizesSvg(cs.per_cluster, cs.histogram, r.eps)}

<h2>Top clusters by duplicates (eps ${r.eps})</h2>
${topRows ? `<table id="top-clusters"><thead><tr><th>centroid</th><th>size</th><th>duplicates</th><th>duplicates / size</th></tr></thead><tbody>${topRows}</tbody></table>` : '<p class="note">No duplicates at this eps.</p>'}

<h2>Pair recall</h2>
${recallHtml(r)}

<h2>Sample duplicate pairs (eps ${r.eps})</h2>
<p class="note">Spread evenly from the closest copies down to the borderline pairs just above the threshold; look at the lowest scores to judge eps.</p>
${pairRows ? `<table id="sample-pairs"><thead><tr><th>id</th><th>max_id</th><th>score</th><th>centroid</th>${metaHead}</tr></thead><tbody>${pairRows}</tbody></table>` : '<p class="note">No duplicates at this eps.</p>'}
</body>
</html>
`;
}

/** The pair recall section: what `semdedup recall` measured, with its what-if table. */
function recallHtml(r: InspectReport): string {
  const probe = r.run.probe && r.run.probe > 1 ? `--probe ${r.run.probe} --probe-margin ${r.run.probe_margin}` : '--probe 1';
  const c = r.recall;
  if (!c) return `<p class="note">Not measured for this run (${esc(probe)}). Measure it: <code>semdedup recall --output ${esc(r.output)}</code>.</p>`;
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const rows = c.what_if
    .map((w) => `<tr><td>${w.probe_margin}</td><td>${pct(w.recall)}</td><td>${pct(w.probed_fraction)}</td><td>${w.est_pairs_ratio.toFixed(2)}</td></tr>`)
    .join('');
  return `<p class="note">Share of the near-duplicate pairs (cos ≥ ${Number(c.threshold.toFixed(12))}, eps ${c.eps}) that the run compared, by exact brute force of ${n(c.sample)} sampled clips against all ${n(c.rows)}:
a pair straddling a cluster boundary is never scored unless probing puts both clips in one compared set. Run: <code>${esc(probe)}</code>.</p>
<table id="recall"><thead><tr><th>recall</th><th>pairs</th><th>covered</th><th>same cluster</th><th>by probing</th><th>missed</th></tr></thead>
<tbody><tr><td>${pct(c.recall)}</td><td>${n(c.pairs)}</td><td>${n(c.covered)}</td><td>${n(c.covered_same_cluster)}</td><td>${n(c.covered_by_probe)}</td><td>${n(c.missed)}</td></tr></tbody></table>
<p class="note">What <code>--probe 2 --probe-margin m</code> would reach on the same centroids; est. pairs × is its pairwise work relative to <code>--probe 1</code>.</p>
<table id="recall-what-if"><thead><tr><th>margin m</th><th>recall</th><th>clips probed</th><th>est. pairs ×</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Write `html` to `path` through a temporary file in the same folder, then rename. */
export async function writeReportFile(path: string, html: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}`);
  try {
    await writeFile(tmp, html);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
