// Builds only the extension's two bundles (options in scripts/bundles.mjs), for packaging and the
// UI tests, so a half-finished CLI elsewhere in the tree never blocks them. --production minifies.
// Writes dist/extension.meta.json (esbuild metafile) for the bundle checks and the benchmark.
import * as esbuild from 'esbuild';
import { writeFileSync } from 'fs';
import { extensionBundle, webviewBundle } from './bundles.mjs';

const production = process.argv.includes('--production');
const [ext] = await Promise.all([esbuild.build(extensionBundle(production)), esbuild.build(webviewBundle(production))]);
writeFileSync('dist/extension.meta.json', JSON.stringify(ext.metafile));
