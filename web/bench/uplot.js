import uPlot from 'uplot';
window.run = () => {
  const n = 365, x = Array.from({length: n}, (_, i) => 1700000000 + i * 86400);
  const data = [x]; const series = [{}];
  for (let s = 0; s < 10; s++) { data.push(x.map((_, i) => Math.round(1000 + 500 * Math.sin(i / 20 + s) + s * 100))); series.push({label: 's' + s, stroke: '#' + (s * 111111 % 0xffffff).toString(16).padStart(6, '0')}); }
  const el = document.createElement('div'); document.body.appendChild(el);
  const t0 = performance.now();
  new uPlot({width: 1000, height: 300, series}, data, el);
  return performance.now() - t0;
};
