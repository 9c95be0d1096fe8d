// Bundles the extension (and the runtime mode for OHIF < 3.13) as ES modules with their own React.
// Usage: node tools/build-extension.mjs <out-dir>
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: build-extension.mjs <out-dir>');
  process.exit(2);
}

await build({
  absWorkingDir: root,
  entryPoints: { 'cbmir-extension': 'src/index.js', 'cbmir-mode': 'src/mode/index.js' },
  outdir,
  bundle: true,
  format: 'esm',
  splitting: false,
  platform: 'browser',
  target: ['es2020'],
  jsx: 'automatic',
  loader: { '.js': 'jsx' },
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
