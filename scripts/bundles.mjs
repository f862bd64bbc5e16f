// The esbuild options of the three bundles, in one place for scripts/build.mjs (development),
// scripts/build-extension.mjs (the extension for packaging and UI tests) and scripts/pack-cli.mjs
// (the CLI/daemon for the npm tarball).
//  cli:       the CLI and daemon (system Node; native modules and dockerode stay external: they are
//             the tarball's runtime dependencies, built at install)
//  extension: the VS Code extension host side (cjs, `vscode` external, no native modules)
//  webview:   the browser side of the panels

/** Modules the CLI bundle leaves to node_modules: native ones (and dockerode, whose ssh2 has native options). */
export const CLI_EXTERNAL = ['better-sqlite3', 'better-sqlite3-napi', 'zstd-napi', 'lzma-native', 'dockerode', 'cpu-features', 'ssh2'];

const common = (production) => ({ bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' });

export function cliBundle(production, outfile = 'dist/cloudlet.js') {
  return {
    ...common(production), entryPoints: ['sandbox/cli/main.ts'], outfile, platform: 'node',
    target: 'node20', format: 'cjs', define: { 'process.env.CLOUDLET_CLI_MAIN': '"1"' }, external: CLI_EXTERNAL,
  };
}

export function extensionBundle(production) {
  return { ...common(production), entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', platform: 'node', target: 'node20', format: 'cjs', external: ['vscode'], metafile: true };
}

export function webviewBundle(production) {
  return { ...common(production), entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', target: 'es2022', format: 'iife' };
}
