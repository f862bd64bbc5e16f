// The npm tarball of the `cloudlet` CLI and daemon: artifacts/cloudlet-toolkit-X.Y.Z.tgz, for
// `npm install -g FILE` (scripts/package.sh calls this). Staged in a folder of its own:
//   dist/cloudlet.js   the production bundle (everything but the modules it leaves external)
//   bin/cloudlet       the command (checks the Node version, then runs the bundle)
//   sandbox/guest/     the test-guest builder's files (scripts and configs; no sources)
//   package.json       bin, engines, and as dependencies only the external modules: the native
//                      ones (better-sqlite3 12 for Node 20, zstd-napi) are built for the installing Node
//                      at install; better-sqlite3 13 (alias better-sqlite3-napi) is prebuilt Node-API
//   README.md
// Fails when the bundle would load a package the tarball does not depend on.
import * as esbuild from 'esbuild';
import { builtinModules } from 'module';
import { execFileSync } from 'child_process';
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import path from 'path';
import { CLI_EXTERNAL, cliBundle } from './bundles.mjs';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const outDir = path.resolve(process.argv[2] ?? 'artifacts');
const stage = path.join(outDir, '.stage-cli');
rmSync(stage, { recursive: true, force: true });
mkdirSync(path.join(stage, 'bin'), { recursive: true });

const built = await esbuild.build({ ...cliBundle(true, path.join(stage, 'dist', 'cloudlet.js')), sourcemap: false, keepNames: true, metafile: true });

const dependencies = Object.fromEntries(CLI_EXTERNAL.filter((n) => pkg.dependencies[n]).map((n) => [n, pkg.dependencies[n]]));
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
const packageOf = (spec) => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
const missing = new Set();
for (const out of Object.values(built.metafile.outputs)) {
  for (const imp of out.imports) {
    if (!imp.external || imp.path.startsWith('node:') || builtins.has(imp.path) || builtins.has(packageOf(imp.path))) continue;
    if (!dependencies[packageOf(imp.path)]) missing.add(imp.path);
  }
}
// cpu-features and ssh2 are dockerode's (optional) own dependencies, not the bundle's.
for (const m of ['cpu-features', 'ssh2']) missing.delete(m);
if (missing.size) {
  console.error(`pack-cli: the bundle loads ${[...missing].join(', ')}, which the tarball does not depend on`);
  process.exit(1);
}

writeFileSync(path.join(stage, 'bin', 'cloudlet'), `#!/usr/bin/env node
// The installed \`cloudlet\` command: the bundled CLI and daemon of Cloudlet Toolkit ${pkg.version}.
'use strict';
var v = process.versions.node.split('.').map(Number);
if (v[0] < 20 || (v[0] === 20 && v[1] < 18)) {
  process.stderr.write('cloudlet: needs Node.js 20.18 or newer (this is ' + process.version + ' at ' + process.execPath + ')\\n');
  process.exit(1);
}
require('../dist/cloudlet.js');
`);
chmodSync(path.join(stage, 'bin', 'cloudlet'), 0o755);

// The guest builder reads its scripts from <package>/sandbox/guest at run time.
cpSync('sandbox/guest', path.join(stage, 'sandbox', 'guest'), { recursive: true, filter: (src) => !/\.ts$/.test(src) });

writeFileSync(path.join(stage, 'package.json'), JSON.stringify({
  name: pkg.name,
  version: pkg.version,
  description: 'Cloudlet Toolkit: the `cloudlet` CLI and the cloudlet daemon (local sandbox or remote cloudlet; OpenStack-compatible API)',
  license: pkg.license,
  bin: { cloudlet: 'bin/cloudlet' },
  engines: { node: pkg.engines.node },
  os: ['linux'],
  dependencies,
  files: ['bin', 'dist', 'sandbox', 'README.md'],
}, null, 2) + '\n');

writeFileSync(path.join(stage, 'README.md'), `# Cloudlet Toolkit ${pkg.version}: the cloudlet CLI and daemon

Install (Node.js 20.18 or newer; the native modules build for the installing Node):

    npm install -g ./cloudlet-toolkit-${pkg.version}.tgz

Then \`cloudlet --help\`. A local sandbox daemon: \`cloudlet serve\` (127.0.0.1:8774, plain HTTP on
loopback). A remote cloudlet speaks HTTPS: \`cloudlet serve --listen 0.0.0.0:8774 --tls-self-signed\`
(prints the certificate's SHA-256 fingerprint), or as a systemd service: \`cloudlet service install\`.
The VS Code extension (the .vsix built beside this tarball) runs this \`cloudlet\` for its local sandbox.
Needs QEMU on the host (\`apt-get install qemu-system-x86 qemu-utils\`).
`);

execFileSync('npm', ['pack', '--silent', '--pack-destination', outDir], { cwd: stage, stdio: ['ignore', 'ignore', 'inherit'] });
rmSync(stage, { recursive: true, force: true });
console.log(`package: ${path.join(outDir, `${pkg.name}-${pkg.version}.tgz`)}`);
