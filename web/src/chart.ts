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
  const plot = new uPlot(
    {
      width,
      height,
      scales: { x: { time: options.time !== false } },
      axes: [
        options.xLabel
          ? { values: (_u, ticks) => ticks.map((tick) => options.xLabel!(tick)), incrs: [1, 2, 5, 10, 20, 50] }
          : {},
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
