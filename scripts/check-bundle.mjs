// Fails when a bundle would load a native module: VS Code's extension host is Electron on the desktop
// (ABI differs from Node), so the extension bundle must stay pure JS. Looks for .node requires,
// process.dlopen and the usual native loaders (bindings, node-gyp-build, prebuild-install).
import { readFileSync } from 'fs';
const file = process.argv[2] ?? 'dist/extension.js';
const src = readFileSync(file, 'utf8');
const patterns = [
  [/require\(["'][^"']+\.node["']\)/, 'require of a .node file'],
  [/process\.dlopen\s*\(/, 'process.dlopen'],
  [/require\(["'](bindings|node-gyp-build|prebuild-install|node-pre-gyp|@mapbox\/node-pre-gyp)["']\)/, 'a native module loader'],
  [/require\(["'](better-sqlite3|better-sqlite3-napi|zstd-napi|lzma-native|dockerode|cpu-features|ssh2|keytar)["']\)/, 'a native dependency of the daemon'],
];
const found = patterns.filter(([re]) => re.test(src)).map(([, what]) => what);
if (found.length) {
  console.error(`check-bundle: ${file} loads native code: ${found.join(', ')}`);
  process.exit(1);
}
console.log(`check-bundle: ${file} is pure JS (${src.length} bytes)`);
