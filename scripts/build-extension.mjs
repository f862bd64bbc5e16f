// Builds only the extension's two bundles (same options as scripts/build.mjs), for packaging and the
// UI tests, so a half-finished CLI elsewhere in the tree never blocks them. --production minifies.
// Writes dist/extension.meta.json (esbuild metafile) for the bundle checks and the benchmark.
import * as esbuild from 'esbuild';
import { writeFileSync } from 'fs';

const production = process.argv.includes('--production');
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' };
const [ext] = await Promise.all([
  esbuild.build({ ...common, entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', platform: 'node', target: 'node20', format: 'cjs', external: ['vscode'], metafile: true }),
  esbuild.build({ ...common, entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', target: 'es2022', format: 'iife' }),
]);
writeFileSync('dist/extension.meta.json', JSON.stringify(ext.metafile));
