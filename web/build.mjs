// Builds the dashboard into web/dist: index.html, assets/app.js (one
// minified bundle: our TypeScript and uPlot) and assets/app.css (ours and
// uPlot's). `make build` runs it; cmake/EmbedWebAssets.cmake embeds dist/
// into the minpanel binary. Prints each file's size and its gzip size.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(path.join(dist, 'assets'), { recursive: true });

await esbuild.build({
  entryPoints: [path.join(root, 'src/main.ts')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outfile: path.join(dist, 'assets/app.js'),
  legalComments: 'eof',
  logLevel: 'warning',
});
const css = [
  fs.readFileSync(path.join(root, 'node_modules/uplot/dist/uPlot.min.css'), 'utf8'),
  fs.readFileSync(path.join(root, 'src/style.css'), 'utf8'),
].join('\n');
const minifiedCss = await esbuild.transform(css, { loader: 'css', minify: true });
fs.writeFileSync(path.join(dist, 'assets/app.css'), minifiedCss.code);
fs.copyFileSync(path.join(root, 'src/index.html'), path.join(dist, 'index.html'));
fs.copyFileSync(path.join(root, 'src/favicon.svg'), path.join(dist, 'assets/favicon.svg'));

for (const file of ['index.html', 'assets/app.js', 'assets/app.css', 'assets/favicon.svg']) {
  const bytes = fs.readFileSync(path.join(dist, file));
  const gzip = zlib.gzipSync(bytes, { level: 9 }).length;
  console.log(`web/dist/${file}: ${bytes.length} bytes (${gzip} gzip)`);
}
