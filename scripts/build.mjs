// Builds the three bundles with esbuild:
//  dist/cloudlet.js   the CLI and daemon (system Node; native modules stay external)
//  dist/extension.js  the VS Code extension host side (cjs, `vscode` external, no native modules)
//  dist/webview.js    the browser side of the panels
import * as esbuild from 'esbuild';
import { existsSync } from 'fs';

const production = process.argv.includes('--production');
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' };
const builds = [
  esbuild.build({
    ...common, entryPoints: ['sandbox/cli/main.ts'], outfile: 'dist/cloudlet.js', platform: 'node',
    target: 'node20', format: 'cjs', define: { 'process.env.CLOUDLET_CLI_MAIN': '"1"' },
    external: ['better-sqlite3', 'zstd-napi', 'dockerode', 'cpu-features', 'ssh2'],
  }),
];
if (existsSync('extension/main.ts')) {
  builds.push(esbuild.build({
    ...common, entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', platform: 'node',
    target: 'node20', format: 'cjs', external: ['vscode'],
  }));
}
if (existsSync('webview/main.ts')) {
  builds.push(esbuild.build({
    ...common, entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser',
    target: 'es2022', format: 'iife',
  }));
}
await Promise.all(builds);
