/**
 * Small inline-SVG charts for the inspect report, generated as text (no browser library, no
 * network): score histogram bars, the eps curve and cluster-size bars. Every chart has a fixed
 * viewBox, axes with ticks, and a <title> per mark for hover tooltips.
 */
import type { ClusterRow, EpsRow, HistogramBin } from './index.js';

const W = 760;
const H = 280;
const M = { left: 64, right: 24, top: 24, bottom: 48 };
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const f = (x: number) => (Math.round(x * 100) / 100).toString();

function svgOpen(id: string, label: string): string {
  return `<svg id="${id}" class="chart" role="img" aria-label="${escapeXml(label)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">`;
}

function axes(xLabel: string, yLabel: string): string {
  const x0 = M.left;
  const y0 = M.top + PLOT_H;
  return (
    `<g class="axes"><line x1="${x0}" y1="${M.top}" x2="${x0}" y2="${y0}"/><line x1="${x0}" y1="${y0}" x2="${x0 + PLOT_W}" y2="${y0}"/></g>` +
    `<text class="axis-label" x="${x0 + PLOT_W / 2}" y="${H - 8}" text-anchor="middle">${escapeXml(xLabel)}</text>` +
    `<text class="axis-label" transform="translate(14 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`
  );
}

function xTick(x: number, label: string): string {
  const y0 = M.top + PLOT_H;
  return `<g class="tick"><line x1="${f(x)}" y1="${y0}" x2="${f(x)}" y2="${y0 + 5}"/><text x="${f(x)}" y="${y0 + 18}" text-anchor="middle">${escapeXml(label)}</text></g>`;
}

function yTick(y: number, label: string): string {
  return (
    `<g class="tick"><line x1="${M.left - 5}" y1="${f(y)}" x2="${M.left}" y2="${f(y)}"/>` +
    `<line class="grid" x1="${M.left}" y1="${f(y)}" x2="${M.left + PLOT_W}" y2="${f(y)}"/>` +
    `<text x="${M.left - 8}" y="${f(y + 4)}" text-anchor="end">${escapeXml(label)}</text></g>`
  );
}

/** Histogram of cosine_sim_score: one `rect.bar` per bin (empty bins have height 0), log-scaled counts. */
export function scoreHistogramSvg(bins: readonly HistogramBin[], eps: number): string {
  const maxCount = Math.max(1, ...bins.map((b) => b.count));
  const logMax = Math.log10(1 + maxCount);
  const xOf = (v: number) => M.left + v * PLOT_W;
  const yOf = (count: number) => M.top + PLOT_H - (Math.log10(1 + count) / logMax) * PLOT_H;
  const parts: string[] = [svgOpen('score-histogram', 'histogram of cosine_sim_score')];
  for (let p = 0; 10 ** p <= maxCount; p++) parts.push(yTick(yOf(10 ** p), (10 ** p).toLocaleString('en-US')));
  for (let i = 0; i <= 10; i++) parts.push(xTick(xOf(i / 10), (i / 10).toFixed(1)));
  parts.push('<g class="bars">');
  bins.forEach((b, i) => {
    const x = xOf(b.lo) + 0.5;
    const w = Math.max(0.5, xOf(b.hi) - xOf(b.lo) - 1);
    // A non-empty bin is at least 2 px tall so single clips stay visible.
    const h = b.count === 0 ? 0 : Math.max(2, M.top + PLOT_H - yOf(b.count));
    const close = i === bins.length - 1 ? ']' : ')';
    parts.push(
      `<rect class="bar" x="${f(x)}" y="${f(M.top + PLOT_H - h)}" width="${f(w)}" height="${f(h)}" data-count="${b.count}">` +
        `<title>[${b.lo.toFixed(3)}, ${b.hi.toFixed(3)}${close}: ${b.count.toLocaleString('en-US')} clips</title></rect>`,
    );
  });
  parts.push('</g>');
  const t = xOf(Math.min(1, Math.max(0, 1 - eps)));
  parts.push(
    `<line class="threshold" x1="${f(t)}" y1="${M.top}" x2="${f(t)}" y2="${M.top + PLOT_H}"/>` +
      `<text class="threshold-label" x="${f(t - 4)}" y="${M.top + 12}" text-anchor="end">1 − eps = ${escapeXml(String(Number((1 - eps).toFixed(6))))}</text>`,
  );
  parts.push(axes('cosine_sim_score (max similarity to a clip ranked before it in its cluster)', 'clips (log scale)'), '</svg>');
  return parts.join('');
}

/** Fraction of clips kept against eps (log x): a polyline with one `circle.point` per grid value. */
export function epsCurveSvg(rows: readonly EpsRow[], eps: number): string {
  const lx = rows.map((r) => Math.log10(Math.max(r.eps, 1e-9)));
  let lo = Math.min(...lx, Math.log10(Math.max(eps, 1e-9)));
  let hi = Math.max(...lx, Math.log10(Math.max(eps, 1e-9)));
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const minFraction = Math.min(...rows.map((r) => r.fraction));
  const yLo = Math.max(0, Math.floor(minFraction * 10 - 0.5) / 10);
  const xOf = (e: number) => M.left + 10 + ((Math.log10(Math.max(e, 1e-9)) - lo) / (hi - lo)) * (PLOT_W - 20);
  const yOf = (fr: number) => M.top + PLOT_H - ((fr - yLo) / (1 - yLo || 1)) * PLOT_H;
  const parts: string[] = [svgOpen('eps-curve', 'fraction of clips kept against eps')];
  for (let i = 0; i <= 5; i++) {
    const fr = yLo + ((1 - yLo) * i) / 5;
    parts.push(yTick(yOf(fr), `${(fr * 100).toFixed(0)}%`));
  }
  for (const r of rows) parts.push(xTick(xOf(r.eps), String(r.eps)));
  const chosen = xOf(eps);
  parts.push(`<line class="threshold" x1="${f(chosen)}" y1="${M.top}" x2="${f(chosen)}" y2="${M.top + PLOT_H}"/>`);
  parts.push(`<polyline class="curve" points="${rows.map((r) => `${f(xOf(r.eps))},${f(yOf(r.fraction))}`).join(' ')}"/>`);
  for (const r of rows) {
    parts.push(
      `<circle class="point" cx="${f(xOf(r.eps))}" cy="${f(yOf(r.fraction))}" r="4"><title>eps ${r.eps} (score ≥ ${Number(r.threshold.toFixed(6))}): ` +
        `${r.duplicates.toLocaleString('en-US')} duplicates, ${r.kept.toLocaleString('en-US')} kept (${(r.fraction * 100).toFixed(2)}%)</title></circle>`,
    );
  }
  parts.push(axes('eps (log scale); duplicates are clips with cosine_sim_score ≥ 1 − eps', 'fraction kept'), '</svg>');
  return parts.join('');
}

/**
 * Cluster sizes, largest first, each bar split into kept clips and duplicates at eps. With many
 * clusters (over 300) a histogram of sizes is drawn instead.
 */
export function clusterSizesSvg(clusters: readonly ClusterRow[], histogram: readonly HistogramBin[], eps: number): string {
  const parts: string[] = [svgOpen('cluster-sizes', 'cluster sizes')];
  if (clusters.length <= 300) {
    const sorted = [...clusters].sort((a, b) => b.size - a.size || a.centroid - b.centroid);
    const max = Math.max(1, ...sorted.map((c) => c.size));
    const step = PLOT_W / Math.max(1, sorted.length);
    const yOf = (v: number) => M.top + PLOT_H - (v / max) * PLOT_H;
    for (const v of niceTicks(max)) parts.push(yTick(yOf(v), v.toLocaleString('en-US')));
    parts.push('<g class="bars">');
    sorted.forEach((c, i) => {
      const x = M.left + i * step + Math.min(1, step * 0.1);
      const w = Math.max(0.5, step - Math.min(2, step * 0.2));
      const keptH = ((c.size - c.duplicates) / max) * PLOT_H;
      const dupH = (c.duplicates / max) * PLOT_H;
      const title = `<title>cluster ${c.centroid}: ${c.size.toLocaleString('en-US')} clips, ${c.duplicates.toLocaleString('en-US')} duplicates at eps ${eps}</title>`;
      parts.push(
        `<g class="cluster" data-centroid="${c.centroid}">` +
          `<rect class="bar kept" x="${f(x)}" y="${f(M.top + PLOT_H - keptH)}" width="${f(w)}" height="${f(keptH)}">${title}</rect>` +
          `<rect class="bar dup" x="${f(x)}" y="${f(M.top + PLOT_H - keptH - dupH)}" width="${f(w)}" height="${f(dupH)}">${title}</rect></g>`,
      );
      if (sorted.length <= 40) parts.push(xTick(x + w / 2, String(c.centroid)));
    });
    parts.push('</g>');
    parts.push(
      `<g class="legend"><rect class="kept" x="${W - 200}" y="${M.top}" width="10" height="10"/><text x="${W - 186}" y="${M.top + 9}">kept</text>` +
        `<rect class="dup" x="${W - 140}" y="${M.top}" width="10" height="10"/><text x="${W - 126}" y="${M.top + 9}">duplicates (eps ${eps})</text></g>`,
    );
    parts.push(axes(sorted.length <= 40 ? 'cluster (centroid), largest first' : `${sorted.length} clusters, largest first`, 'clips'), '</svg>');
    return parts.join('');
  }
  const max = Math.max(1, ...histogram.map((b) => b.count));
  const step = PLOT_W / Math.max(1, histogram.length);
  const yOf = (v: number) => M.top + PLOT_H - (v / max) * PLOT_H;
  for (const v of niceTicks(max)) parts.push(yTick(yOf(v), v.toLocaleString('en-US')));
  parts.push('<g class="bars">');
  histogram.forEach((b, i) => {
    const x = M.left + i * step + 1;
    const h = (b.count / max) * PLOT_H;
    parts.push(`<rect class="bar kept" x="${f(x)}" y="${f(M.top + PLOT_H - h)}" width="${f(Math.max(0.5, step - 2))}" height="${f(h)}"><title>size ${b.lo}–${b.hi}: ${b.count} clusters</title></rect>`);
    parts.push(xTick(x + step / 2 - 1, String(b.lo)));
  });
  parts.push('</g>', axes('cluster size (clips)', 'clusters'), '</svg>');
  return parts.join('');
}

/** About five round tick values in (0, max]. */
function niceTicks(max: number): number[] {
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = step; v <= max + 1e-9; v += step) ticks.push(Math.round(v));
  return ticks;
}
