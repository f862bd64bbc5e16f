import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import type * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { INSTALL_HINT, LocalDaemon, daemonUrl, probe, resolveTools, which, type LocalDaemonSettings, type MissingToolError } from '../../../extension/localDaemon';
import { installStepsMarkdown, missingToolSummary } from '../../../extension/state/install';

const settings = (o: Partial<LocalDaemonSettings> = {}): LocalDaemonSettings => ({ nodePath: '', cliPath: '', nodeArgs: [], listen: '127.0.0.1:1', dataDir: '', extraArgs: [], ...o });

describe('extension local daemon discovery', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ext-ld-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const exe = (name: string) => { const p = path.join(dir, name); fs.writeFileSync(p, '#!/bin/sh\n', { mode: 0o755 }); return p; };

  it('settings win over PATH', () => {
    const node = exe('mynode'); const cli = exe('mycli');
    exe('node'); exe('cloudlet');
    assert.deepEqual(resolveTools(settings({ nodePath: node, cliPath: cli }), dir), { node, cli });
  });

  it('PATH is used when the settings are empty', () => {
    const node = exe('node'); const cli = exe('cloudlet');
    assert.equal(which('node', dir), node);
    assert.deepEqual(resolveTools(settings(), `/nonexistent${path.delimiter}${dir}`), { node, cli });
  });

  it('nothing found: a MissingTool error with the install hint', () => {
    assert.throws(() => resolveTools(settings(), dir), (e: any) => e.code === 'MissingTool' && /No Node\.js found/.test(e.message) && e.hint === INSTALL_HINT);
    exe('node');
    assert.throws(() => resolveTools(settings(), dir), (e: any) => e.code === 'MissingTool' && /cloudlet CLI is not on PATH/.test(e.message));
    assert.throws(() => resolveTools(settings({ nodePath: path.join(dir, 'gone') }), dir), /cloudlet\.nodePath points to .*gone/);
  });

  it('the error names which tool is missing, and the hint the install command that works', () => {
    const missing = (s: LocalDaemonSettings) => { try { resolveTools(s, dir); } catch (e) { return (e as MissingToolError).missing; } return 'none'; };
    assert.equal(missing(settings()), 'node');
    const node = exe('node');
    assert.equal(missing(settings()), 'cli');
    assert.equal(missing(settings({ nodePath: node, cliPath: path.join(dir, 'gone') })), 'cliPath');
    assert.equal(missing(settings({ nodePath: path.join(dir, 'gone') })), 'nodePath');
    assert.match(INSTALL_HINT, /npm install -g --allow-scripts=better-sqlite3,zstd-napi \.\/cloudlet-toolkit-X\.Y\.Z\.tgz/);
    assert.doesNotMatch(INSTALL_HINT, /npm install -g cloudlet-toolkit\b/);
    assert.doesNotMatch(INSTALL_HINT, /`/, 'no raw backticks in a toast');
    const md = installStepsMarkdown('1.2.3', 'cli');
    assert.match(md, /npm install -g --allow-scripts=better-sqlite3,zstd-napi \.\/cloudlet-toolkit-1\.2\.3\.tgz/);
    assert.match(md, /npm run package/);
    assert.match(md, /Missing now:.*cloudlet CLI is not on PATH/);
    assert.match(missingToolSummary('node'), /Node\.js \(20 or newer\) is not on PATH/);
  });

  it('probe says no to a port where nothing or something else listens', async () => {
    const s = http.createServer((_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{}'); });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as net.AddressInfo).port;
    assert.equal(await probe(daemonUrl(`127.0.0.1:${port}`)), false, 'a server that is not a cloudlet daemon');
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
    assert.equal(await probe(daemonUrl(`127.0.0.1:${port}`)), false, 'nothing listening');
  });

  it('with autoStart off and no daemon, ensure() says how to start one; nothing is stopped that it did not start', async () => {
    const d = new LocalDaemon(() => settings({ listen: '127.0.0.1:1', dataDir: dir }), () => {});
    await assert.rejects(d.ensure(false), (e: any) => e.code === 'Unavailable' && /No cloudlet daemon answers at http:\/\/127\.0\.0\.1:1/.test(e.message));
    assert.equal(d.startedByUs, false);
    await d.stop();
    fs.writeFileSync(path.join(dir, 'admin.password'), 'pw\n');
    assert.equal(d.readPassword(), 'pw');
  });
});
