import * as echarts from 'echarts';
window.run = () => {
  const n = 365, x = Array.from({length: n}, (_, i) => (1700000000 + i * 86400) * 1000);
  const series = [];
  for (let s = 0; s < 10; s++) series.push({type: 'line', name: 's' + s, showSymbol: false, data: x.map((t, i) => [t, Math.round(1000 + 500 * Math.sin(i / 20 + s) + s * 100)])});
  const el = document.createElement('div'); el.style.width = '1000px'; el.style.height = '300px'; document.body.appendChild(el);
  const t0 = performance.now();
  const chart = echarts.init(el, null, {renderer: 'canvas'});
  chart.setOption({animation: false, tooltip: {trigger: 'axis'}, legend: {}, xAxis: {type: 'time'}, yAxis: {type: 'value'}, series});
  return performance.now() - t0;
};
