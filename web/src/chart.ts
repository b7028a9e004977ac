// Charts with uPlot (a small, fast canvas chart library; web/README.md has
// the measurements that chose it). Hovering shows each series' exact value
// in the legend; the table below every chart holds the same numbers.
import uPlot from 'uplot';

export const PALETTE = ['#1d4ed8', '#c2410c', '#047857', '#7e22ce', '#b91c1c', '#0e7490', '#a16207',
  '#be185d', '#4d7c0f', '#475569'];

export interface LineSeries {
  label: string;
  values: (number | null)[];
  dashed?: boolean;
  color?: string;
}

const valueFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
// uPlot's axis font, to measure tick labels with.
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif';

// The width in CSS pixels of the widest label, as the axis draws it.
function widestLabel(labels: string[]): number {
  const context = document.createElement('canvas').getContext('2d');
  if (!context) return Math.max(0, ...labels.map((label) => label.length * 7));
  context.font = AXIS_FONT;
  return Math.max(0, ...labels.map((label) => context.measureText(label).width));
}

// The x axis of named categories (options.xLabel; the scale of time or
// numbers otherwise). Ticks are at least a label's width apart, so labels
// never overlap; bars get half a category on each side, so the first and
// last are whole. When a bar chart's labels do not fit side by side but fit
// slanted (phone width: ten time-to-convert buckets in 300 px), they are
// slanted, so every bucket keeps its label; otherwise uPlot labels every
// 2nd or 5th. Horizontal labels are centred on their tick: the right padding
// holds half the widest ("7 d or more" was cut off at the edge).
const SLANT_SPACE_PX = 22;  // between slanted labels: more than a line of text
const LABEL_GAP_PX = 8;  // between horizontal labels
function categoryAxis(
  x: number[],
  width: number,
  options: { bars?: boolean; time?: boolean; xLabel?: (value: number) => string },
): { padding?: uPlot.Padding; scales: uPlot.Scales; axis: uPlot.Axis } {
  const xScale: uPlot.Scale = { time: options.time !== false };
  if (!options.xLabel) return { scales: { x: xScale }, axis: {} };
  const label = options.xLabel;
  const values = (_u: uPlot, ticks: number[]) => ticks.map((tick) => label(tick));
  const widest = widestLabel(x.map((value) => label(value)));
  const rightPx = Math.max(30, Math.ceil(widest / 2) + 4);
  if (options.bars) xScale.range = (_u, min, max) => [min - 0.5, max + 0.5];
  // The plot is the width less the y axis (60 px, and 30 for its title) and the right padding.
  const perCategoryPx = (width - 90 - rightPx) / Math.max(1, x.length);
  const incrs = [1, 2, 5, 10, 20, 50];
  if (options.bars && widest + LABEL_GAP_PX > perCategoryPx && perCategoryPx >= SLANT_SPACE_PX) {
    return {
      scales: { x: xScale },
      axis: { values, incrs, space: SLANT_SPACE_PX, rotate: 45, size: Math.ceil(widest * Math.SQRT1_2) + 24 },
    };
  }
  return { padding: [null, rightPx, null, null], scales: { x: xScale }, axis: { values, incrs, space: Math.ceil(widest) + LABEL_GAP_PX } };
}

// A chart of `series` over `x` (seconds since the epoch when `time`, else
// plain numbers labelled by `xLabel`), as lines or bars, sized to
// `container` and re-sized with it. Returns a function that destroys it.
export function drawChart(
  container: HTMLElement,
  x: number[],
  series: LineSeries[],
  options: { bars?: boolean; time?: boolean; xLabel?: (value: number) => string; xName?: string; yLabel?: string; percent?: boolean },
): () => void {
  const width = Math.max(280, container.clientWidth || 600);
  const height = width < 500 ? 220 : 300;
  const format = (value: number | null) =>
    value === null || value === undefined ? '–' : options.percent ? `${(value * 100).toFixed(1)}%` : valueFormat.format(value);
  const bars = options.bars ? uPlot.paths.bars!({ size: [0.8 / Math.max(1, series.length), 64], gap: 1 }) : undefined;
  const xAxis = categoryAxis(x, width, options);
  const plot = new uPlot(
    {
      width,
      height,
      padding: xAxis.padding,
      scales: xAxis.scales,
      axes: [
        xAxis.axis,
        { label: options.yLabel, values: (_u, ticks) => ticks.map((tick) => format(tick)), size: 60 },
      ],
      series: [
        options.xLabel
          ? { label: options.xName ?? 'x', value: (_u, value) => (value === null ? '–' : options.xLabel!(value)) }
          : {},
        ...series.map((line, index) => ({
          label: line.label,
          stroke: line.color ?? PALETTE[index % PALETTE.length],
          fill: options.bars ? `${line.color ?? PALETTE[index % PALETTE.length]}cc` : undefined,
          width: 2,
          dash: line.dashed ? [6, 4] : undefined,
          paths: bars,
          points: { show: x.length <= 60 },
          value: (_u: uPlot, value: number | null) => format(value),
        })),
      ],
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
    },
    [x, ...series.map((line) => line.values)] as uPlot.AlignedData,
    container,
  );
  const observer = new ResizeObserver(() => {
    const next = Math.max(280, container.clientWidth);
    if (Math.abs(next - plot.width) > 2) plot.setSize({ width: next, height: next < 500 ? 220 : 300 });
  });
  observer.observe(container);
  return () => {
    observer.disconnect();
    plot.destroy();
  };
}
