/**
 * `npm run package` (issue 15): the .vsix and the npm tarball of the CLI and daemon; the tarball
 * installed into an empty prefix with `npm install -g --prefix DIR FILE` runs the daemon from
 * there (HTTPS, self-signed), with native modules built for this Node inside that prefix and
 * nothing loaded from the checkout.
 */
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { CloudletClient, hostKey } from '../../sandbox/client';
import { cleanEnv, ensureInstalledCli, run } from './fixtures/install';

const ROOT = projectRoot();
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('packaging: the .vsix and the installable CLI/daemon tarball', function () {
  this.timeout(3_600_000);
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-pkg-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('npm run package builds cloudlet-toolkit-X.Y.Z.vsix and cloudlet-toolkit-X.Y.Z.tgz with only the runtime dependencies', async () => {
    const r = await run('npm', ['run', 'package', '--silent'], { env: cleanEnv({ PACKAGE_DIR: tmp }) });
    assert.equal(r.code, 0, r.out);
    const vsix = path.join(tmp, `cloudlet-toolkit-${VERSION}.vsix`);
    const tgz = path.join(tmp, `cloudlet-toolkit-${VERSION}.tgz`);
    assert.ok(fs.existsSync(vsix) && fs.existsSync(tgz), fs.readdirSync(tmp).join(', '));

    const files = (await run('tar', ['tzf', tgz])).out.trim().split('\n').sort();
    assert.ok(files.includes('package/bin/cloudlet') && files.includes('package/dist/cloudlet.js') && files.includes('package/package.json'), files.join('\n'));
    assert.ok(files.includes('package/sandbox/guest/agent.sh'), 'the guest builder\'s files are in it');
    assert.deepEqual(files.filter((f) => /\.ts$|node_modules|\/test\/|\.map$/.test(f)), [], 'no sources, tests, node_modules or source maps');
    const pkg = JSON.parse((await run('tar', ['xzf', tgz, '-O', 'package/package.json'])).out) as Record<string, any>;
    assert.equal(pkg.name, 'cloudlet-toolkit');
    assert.equal(pkg.version, VERSION);
    assert.equal(pkg.private, undefined);
    assert.deepEqual(pkg.bin, { cloudlet: 'bin/cloudlet' });
    assert.deepEqual(Object.keys(pkg.dependencies).sort(), ['better-sqlite3', 'better-sqlite3-napi', 'dockerode', 'lzma-native', 'zstd-napi'], 'runtime dependencies only: what the bundle leaves external (better-sqlite3 12 for Node 20, 13 as better-sqlite3-napi for 22+; lzma-native for wire-profile overlays)');
    assert.equal(pkg.devDependencies, undefined);
    assert.equal(pkg.scripts, undefined);

    // The .vsix: the extension's bundles, no daemon, no native code.
    const entries = (await run('unzip', ['-Z1', vsix])).out;
    assert.match(entries, /extension\/dist\/extension\.js/);
    assert.doesNotMatch(entries, /cloudlet\.js|\.node\b|node_modules/);
  });

  it('installs into an empty prefix with npm install -g --prefix and runs the daemon from there', async () => {
    const inst = await ensureInstalledCli();
    assert.ok(fs.lstatSync(inst.bin).isSymbolicLink(), 'npm linked the bin');
    const version = await run(inst.bin, ['--version'], { cwd: tmp });
    assert.equal(version.code, 0, version.out);
    assert.equal(version.out.trim(), VERSION);
    for (const m of ['better-sqlite3', 'zstd-napi']) {
      assert.ok(fs.existsSync(path.join(inst.packageDir, 'node_modules', m)), `${m} is installed in the prefix`);
    }

    // The daemon, from the install, in a folder away from the checkout, as another user would.
    const data = path.join(tmp, 'data');
    const env = cleanEnv({ HOME: tmp, CLOUDLET_HOME: data });
    const proc = spawn(inst.bin, ['serve', '--listen', '127.0.0.2:0', '--data', data, '--tls-self-signed'], { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stderr.on('data', (b) => { out += b; });
    try {
      const ready = await new Promise<{ listening: string; fingerprint: string; pid: number }>((resolve, reject) => {
        let buf = '';
        proc.stdout.on('data', (b) => { buf += b; const m = buf.match(/\{"listening":.*\}\n/); if (m) resolve(JSON.parse(m[0])); });
        proc.once('exit', (code) => reject(new Error(`the installed daemon exited (${code}):\n${out}`)));
      });
      assert.match(ready.listening, /^https:\/\/127\.0\.0\.2:\d+$/);
      const password = fs.readFileSync(path.join(data, 'admin.password'), 'utf8').trim();
      const c = await CloudletClient.login({ authUrl: `${ready.listening}/identity/v3`, username: 'admin', password, project: 'admin', tls: { pins: { [hostKey(ready.listening)]: ready.fingerprint } } });
      assert.deepEqual(await c.listServers(), []);
      assert.ok(Array.isArray(await c.listImages()));

      // What runs is the install: its bundle and the native modules built in the prefix, nothing of the checkout.
      const maps = fs.readFileSync(`/proc/${ready.pid}/maps`, 'utf8');
      const natives = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5]).filter((f) => f && f.endsWith('.node')))];
      const prefix = fs.realpathSync(inst.prefix);  // .cache may be a link
      assert.ok(natives.some((f) => f.startsWith(prefix) && f.includes('better_sqlite3')), `better-sqlite3 from the prefix: ${natives.join(', ')}`);
      assert.deepEqual(natives.filter((f) => !f.startsWith(prefix)), [], 'no native module from anywhere else (the checkout)');
      const cmd = fs.readFileSync(`/proc/${ready.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(cmd.some((a) => a.startsWith(inst.prefix)), `runs the installed bin: ${cmd.join(' ')}`);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  });
});
