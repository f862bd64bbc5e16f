// Builds the three bundles with esbuild (options in scripts/bundles.mjs): dist/cloudlet.js,
// dist/extension.js, dist/webview.js. --production minifies.
import * as esbuild from 'esbuild';
import { existsSync } from 'fs';
import { cliBundle, extensionBundle, webviewBundle } from './bundles.mjs';

const production = process.argv.includes('--production');
const builds = [esbuild.build(cliBundle(production))];
if (existsSync('extension/main.ts')) builds.push(esbuild.build({ ...extensionBundle(production), metafile: false }));
if (existsSync('webview/main.ts')) builds.push(esbuild.build(webviewBundle(production)));
await Promise.all(builds);
