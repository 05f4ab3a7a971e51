import { describe, expect, it } from 'vitest';
import { sizeHistogram, type InspectReport } from '../../src/inspect/index.js';
import { renderInspectHtml } from '../../src/inspect/report-html.js';

function report(overrides: Partial<InspectReport> = {}): InspectReport {
  const per = Array.from({ length: 4 }, (_, i) => ({ centroid: i, size: 10 + i, duplicates: i }));
  return {
    output: 'out/<x>',
    rows: 46,
    clusters: 4,
    eps: 0.01,
    run: { eps: null, duplicates: null },
    metadata_columns: ['video_id'],
    histogram: Array.from({ length: 50 }, (_, i) => ({ lo: i / 50, hi: (i + 1) / 50, count: i === 49 ? 6 : i === 40 ? 40 : 0 })),
    eps_table: [0.001, 0.01, 0.1].map((eps) => ({ eps, threshold: 1 - eps, duplicates: 6, kept: 40, fraction: 40 / 46 })),
    cluster_sizes: { clusters: 4, non_empty: 4, min: 10, median: 11.5, mean: 11.5, max: 13, histogram: sizeHistogram([10, 11, 12, 13], 10), per_cluster: per },
    top_clusters: [{ centroid: 3, size: 13, duplicates: 3, duplicate_fraction: 3 / 13 }],
    sample_pairs: [{ id: 'a<b', max_id: 'c&d', cosine_sim_score: 0.9999, centroid: 3, metadata: { video_id: '<script>' }, max_id_metadata: { video_id: null } }],
    ...overrides,
  };
}

describe('inspect HTML report', () => {
  it('has one histogram bar per bin, escapes text, and references nothing outside the file', () => {
    const html = renderInspectHtml(report());
    expect(html.match(/<rect class="bar" [^>]*data-count=/g)).toHaveLength(50);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;');
    expect(html).toContain('a&lt;b');
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(html).toContain("default-src 'none'");
  });

  it('draws a size histogram instead of per-cluster bars for many clusters, and copes with no duplicates', () => {
    const sizes = Array.from({ length: 500 }, (_, i) => 1 + (i % 37));
    const per = sizes.map((size, centroid) => ({ centroid, size, duplicates: 0 }));
    const histogram = sizeHistogram(sizes, 10);
    expect(histogram.reduce((s, b) => s + b.count, 0)).toBe(500);
    const html = renderInspectHtml(
      report({ cluster_sizes: { clusters: 500, non_empty: 500, min: 1, median: 19, mean: 19, max: 37, histogram, per_cluster: per }, top_clusters: [], sample_pairs: [] }),
    );
    const clusterSvg = html.slice(html.indexOf('<svg id="cluster-sizes"'), html.indexOf('</svg>', html.indexOf('<svg id="cluster-sizes"')));
    expect(clusterSvg.match(/<rect class="bar kept"/g)).toHaveLength(histogram.length);
    expect(html).toContain('No duplicates at this eps.');
  });
});
