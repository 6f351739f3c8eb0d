// Figures for reports: Vega-Lite specs compiled by the `vega-lite` package and rendered to SVG by
// `vega`'s headless View (renderer 'none' + toSVG): no browser, no canvas, no network. Text widths
// are estimated (no font metrics without a canvas), which is fine for axis labels.
//
// One chart shape covers every experiment: points joined by lines per series, with optional
// confidence bars (lo/hi) and an optional horizontal reference line, optionally faceted.
import * as vega from 'vega';
import * as vl from 'vega-lite';

export interface ChartPoint {
  x: number;
  y: number;
  /** Series name (one colour per series). */
  series: string;
  /** Confidence interval of y, where known. */
  lo?: number | null;
  hi?: number | null;
  /** Facet name (one small chart per facet), where the chart is faceted. */
  facet?: string;
}

export interface LineChart {
  title: string;
  xTitle: string;
  yTitle: string;
  points: ChartPoint[];
  /** 'log2' for lengths and sizes; default linear. */
  xScale?: 'linear' | 'log2' | 'log10';
  yScale?: 'linear' | 'log10';
  /** A horizontal rule (e.g. y = 0 for a difference). */
  rule?: number;
  /** Size of one panel in pixels (default 420 × 260). */
  width?: number;
  height?: number;
  /** Facets per row when points carry a facet (default 3). */
  columns?: number;
  /** Series order (legend and colours); default: first appearance. */
  seriesOrder?: string[];
  /** Draw a dot at each point (default true; off for long curves). */
  showPoints?: boolean;
  /** Draw the intervals as a shaded band along each line instead of bars (for curves). */
  band?: boolean;
}

/** The Vega-Lite spec of a line chart (exported for tests and for users who want to restyle it). */
export function lineChartSpec(c: LineChart): vl.TopLevelSpec {
  const points = c.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const order = c.seriesOrder ?? [...new Set(points.map((p) => p.series))];
  // Series with confidence bars are drawn slightly apart along x (dodged) so that the bars do not
  // overlap; the axis keeps the true x values as ticks.
  const hasBars = !c.band && points.some((p) => p.lo !== undefined && p.lo !== null && p.hi !== undefined && p.hi !== null);
  const logX = c.xScale === 'log2' || c.xScale === 'log10';
  const xsAll = [...new Set(points.map((p) => p.x))].sort((a, b) => a - b);
  const step = xsAll.length > 1 ? Math.min(...xsAll.slice(1).map((v, i) => (logX ? Math.log(v / xsAll[i]) : v - xsAll[i]))) : 1;
  const dodge = (x: number, series: string): number => {
    if (!hasBars) return x;
    const k = order.indexOf(series), n = order.length;
    const off = n > 1 ? (k - (n - 1) / 2) * Math.min(0.08, 0.3 / n) * step : 0;
    return logX ? x * Math.exp(off) : x + off;
  };
  const values = points.map((p) => ({
    x: dodge(p.x, p.series), xTrue: p.x, y: p.y, series: p.series, facet: p.facet ?? '',
    lo: p.lo ?? null, hi: p.hi ?? null,
  }));
  const xScale = { ...(c.xScale === 'log2' ? { type: 'log', base: 2 } : c.xScale === 'log10' ? { type: 'log', base: 10 } : { zero: false }), padding: 18 };
  const yScale = c.yScale === 'log10' ? { type: 'log', base: 10 } : { zero: false };
  const x = { field: 'x', type: 'quantitative', title: c.xTitle, scale: xScale, axis: xsAll.length <= 12 ? { values: xsAll, format: '~g' } : {} };
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: order }, legend: { orient: 'bottom', labelLimit: 360, columns: 3 } };
  const layers: unknown[] = [
    { mark: { type: 'line', point: c.showPoints === false ? false : { filled: true, size: 45 }, strokeWidth: c.showPoints === false ? 1.2 : 1.8 }, encoding: { x, y: { field: 'y', type: 'quantitative', title: c.yTitle, scale: yScale }, color } },
  ];
  if (c.band && values.some((v) => v.lo !== null && v.hi !== null)) {
    layers.unshift({
      transform: [{ filter: 'datum.lo !== null && datum.hi !== null' }],
      mark: { type: 'area', opacity: 0.2 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color },
    });
  } else if (values.some((v) => v.lo !== null && v.hi !== null)) {
    layers.push({
      transform: [{ filter: 'datum.lo !== null && datum.hi !== null' }],
      mark: { type: 'rule', strokeWidth: 1.4, opacity: 0.75 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color },
    });
  }
  if (c.rule !== undefined) {
    layers.push({ data: { values: [{ r: c.rule }] }, mark: { type: 'rule', strokeDash: [4, 4], color: '#666' }, encoding: { y: { field: 'r', type: 'quantitative' } } });
  }
  const width = c.width ?? 420, height = c.height ?? 260;
  const faceted = values.some((v) => v.facet !== '');
  const base = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: { font: 'Helvetica, Arial, sans-serif', view: { stroke: '#ddd' }, axis: { gridColor: '#eee' } },
    background: 'white',
  };
  if (!faceted) return { ...base, title: c.title, width, height, data: { values }, layer: layers } as vl.TopLevelSpec;
  return {
    ...base, title: c.title, data: { values },
    facet: { field: 'facet', type: 'nominal', title: null, sort: [...new Set(values.map((v) => v.facet))] },
    columns: c.columns ?? 3,
    resolve: { scale: { y: 'independent' } },
    spec: { width, height, layer: layers },
  } as unknown as vl.TopLevelSpec;
}

/** Renders a Vega-Lite spec to a standalone SVG document (string). */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  // A loader that refuses every fetch: the specs carry their data inline, so nothing may go out.
  const loader = vega.loader();
  loader.load = async (uri: string) => { throw new Error(`figure: refusing to load '${uri}' (data must be inline)`); };
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', loader });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function lineChartSvg(c: LineChart): Promise<string> {
  return renderSvg(lineChartSpec(c));
}
