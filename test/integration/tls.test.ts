/**
 * HTTPS between every client and the daemon, and between daemons (issue 15):
 *  - bad input at `cloudlet serve` is a clear error before anything listens or any state is made:
 *    a key of another certificate, an unreadable key, an expired certificate, a port in use, a data
 *    folder of another user, plain HTTP off loopback;
 *  - clients verify: the typed client, the `cloudlet` CLI and Debian's `openstack` (--os-cacert)
 *    against a CA-signed daemon; a wrong CA and the system store are refused; a self-signed daemon
 *    is pinned by the fingerprint it printed, and a changed certificate is refused loudly;
 *  - daemon to daemon: a live handoff between two self-signed HTTPS daemons (real QEMU), refused with
 *    a wrong pin before the VM is touched; synthesis from another host's https overlay_url.
 */
import { strict as assert } from 'assert';
import { execFile, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as https from 'https';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import type { AddressInfo } from 'net';
import { projectRoot } from '../../sandbox/common/paths';
import { makeCertificate, type MadeCertificate } from '../../sandbox/cloudlet/certificate';
import { CertificateError, CloudletClient, hostKey, type HandoffReport, type Server } from '../../sandbox/client';
import { startDaemon, killProcessesUsing, TEST_USERS, type TestDaemon } from './fixtures/daemon';
import { sampleOverlay, uploadOverlay, counter } from './fixtures/sampleOverlay';
import { qemuPidsUnder } from './fixtures/testBase';

const MAIN = path.join(projectRoot(), 'sandbox/cli/main.ts');
const DAY = 86_400_000;

interface Run { code: number | null; stdout: string; stderr: string }

/** `cloudlet ARGS` to its end (the CLI from source, like the daemon fixture). */
function cli(args: string[], o: { env?: Record<string, string>; input?: string; uid?: number; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: projectRoot(), env: { ...process.env, CLOUDLET_CLI_MAIN: '1', ...o.env }, stdio: ['pipe', 'pipe', 'pipe'],
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
    });
    let stdout = '', stderr = '';
    p.stdout.on('data', (b) => { stdout += b; });
    p.stderr.on('data', (b) => { stderr += b; });
    const t = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
    p.stdin.end(o.input ?? '');
  });
}

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function write(dir: string, name: string, text: string, mode = 0o600): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  fs.chmodSync(f, mode);
  return f;
}

describe('HTTPS daemon: bad input is refused before anything listens', function () {
  this.timeout(300_000);
  let tmp: string;
  let ca: MadeCertificate;
  let good: MadeCertificate;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-tls-bad-'));
    fs.chmodSync(tmp, 0o755);
    ca = await makeCertificate({ commonName: 'Test CA', isCa: true });
    good = await makeCertificate({ commonName: 'cloudlet', ipAddresses: ['127.0.0.2'], issuer: { certPem: ca.certPem, keyPem: ca.keyPem } });
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** `cloudlet serve` that must fail: exit code 2 (bad input) or 1, nothing in its data folder, the port still free. */
  async function refused(args: string[], want: RegExp, o: { uid?: number; data?: string } = {}): Promise<Run> {
    const data = o.data ?? path.join(tmp, `data-${Math.random().toString(36).slice(2)}`);
    const port = await freePort('127.0.0.2');
    const r = await cli(['serve', '--listen', `127.0.0.2:${port}`, '--data', data, ...args], { uid: o.uid });
    assert.notEqual(r.code, 0, `serve should have failed:\n${r.stderr}`);
    assert.match(r.stderr, want);
    assert.ok(!r.stdout.includes('"listening"'), 'it never said it listens');
    assert.ok(!fs.existsSync(path.join(data, 'cloudlet.db')), 'no state was made');
    await new Promise<void>((resolve, reject) => {  // the port is free: nothing listened there
      const s = net.createServer().once('error', reject).listen(port, '127.0.0.2', () => s.close(() => resolve()));
    });
    return r;
  }

  it('a key that does not belong to the certificate', async () => {
    const other = await makeCertificate({ commonName: 'other' });
    const r = await refused(['--tls-cert', write(tmp, 'good.pem', good.certPem), '--tls-key', write(tmp, 'other.key', other.keyPem)],
      /the key .*other\.key does not belong to the certificate .*good\.pem/);
    assert.equal(r.code, 2, 'bad input exits with 2');
  });

  it('an unreadable key, a missing one, one that is no key', async () => {
    const cert = write(tmp, 'good.pem', good.certPem, 0o644);
    const key = write(tmp, 'good.key', good.keyPem, 0o600);
    if (process.geteuid?.() === 0) {
      // root reads everything: the daemon runs as nobody, the key stays root's (mode 0600).
      await refused(['--tls-cert', cert, '--tls-key', key], /cannot read the TLS key .*good\.key: permission denied for user nobody/, { uid: 65534 });
    } else {
      fs.chmodSync(key, 0o000);
      await refused(['--tls-cert', cert, '--tls-key', key], /cannot read the TLS key .*good\.key: permission denied/);
      fs.chmodSync(key, 0o600);
    }
    await refused(['--tls-cert', cert, '--tls-key', path.join(tmp, 'nope.key')], /cannot read the TLS key .*nope\.key: no such file/);
    await refused(['--tls-cert', cert, '--tls-key', cert], /is not a PEM private key/);
    await refused(['--tls-cert', cert], /--tls-cert and --tls-key go together/);
  });

  it('an expired certificate', async () => {
    const expired = await makeCertificate({ commonName: 'old', ipAddresses: ['127.0.0.2'], notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    await refused(['--tls-cert', write(tmp, 'old.pem', expired.certPem), '--tls-key', write(tmp, 'old.key', expired.keyPem)], /the certificate .*old\.pem expired on /);
  });

  it('a data folder that belongs to another user', async function () {
    if (process.geteuid?.() !== 0) this.skip();  // only root can give a folder away
    const data = path.join(tmp, 'nobodys');
    fs.mkdirSync(data);
    fs.chownSync(data, 65534, 65534);
    await refused(['--tls-self-signed'], /the data folder .*nobodys belongs to user nobody \(uid 65534\), not to user root \(uid 0\)/, { data });
    assert.deepEqual(fs.readdirSync(data), [], 'not even a certificate was made in it');
  });

  it('a port in use, and plain HTTP off loopback (with --insecure-http: a warning)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as AddressInfo;
    try {
      const data = path.join(tmp, 'inuse');
      let r = await cli(['serve', '--listen', `127.0.0.1:${port}`, '--data', data]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      assert.ok(!fs.existsSync(path.join(data, 'cloudlet.db')), 'no state was made');

      // Off loopback without TLS: refused before anything is bound (0.0.0.0 is every interface).
      r = await cli(['serve', '--listen', `0.0.0.0:${port}`, '--data', data]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /refusing plain HTTP on 0\.0\.0\.0: off loopback, passwords and tokens would cross the network in the clear/);
      assert.match(r.stderr, /--tls-self-signed/);
      // Asked for: a warning, then it goes on (and here stops at the port our blocker holds on loopback).
      r = await cli(['serve', '--listen', `0.0.0.0:${port}`, '--data', data, '--insecure-http']);
      assert.match(r.stderr, /--insecure-http: plain HTTP on 0\.0\.0\.0; passwords, tokens and overlays cross the network in the clear/);
      assert.match(r.stderr, /is already in use/);
      assert.ok(!fs.existsSync(path.join(data, 'cloudlet.db')));
    } finally { blocker.close(); }
  });
});

describe('HTTPS daemon: clients verify its certificate', function () {
  this.timeout(600_000);
  let tmp: string;
  let ca: MadeCertificate;
  let wrongCa: MadeCertificate;
  let d: TestDaemon;
  let caFile: string, wrongCaFile: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-tls-'));
    ca = await makeCertificate({ commonName: 'Cloudlet Test CA', isCa: true });
    wrongCa = await makeCertificate({ commonName: 'Someone Else CA', isCa: true });
    const cert = await makeCertificate({ commonName: '127.0.0.2', ipAddresses: ['127.0.0.2'], issuer: { certPem: ca.certPem, keyPem: ca.keyPem } });
    caFile = write(tmp, 'ca.pem', ca.certPem, 0o644);
    wrongCaFile = write(tmp, 'wrong-ca.pem', wrongCa.certPem, 0o644);
    d = await startDaemon({ ip: '127.0.0.2', args: ['--tls-cert', write(tmp, 'cert.pem', cert.certPem), '--tls-key', write(tmp, 'key.pem', cert.keyPem)] });
  });
  after(async () => { await d?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('serves HTTPS and advertises https URLs; the typed client trusts its CA and refuses a wrong CA and the system store', async () => {
    assert.match(d.url, /^https:\/\/127\.0\.0\.2:\d+$/);
    const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo', tls: { ca: ca.certPem } });
    assert.ok(c.session.catalog.every((e) => e.endpoints.every((x) => x.url.startsWith('https://'))), 'every catalog URL is https');
    assert.deepEqual(await c.listServers(), []);

    for (const [tls, why] of [[{ ca: wrongCa.certPem }, 'a wrong CA'], [{}, 'the system store']] as const) {
      await assert.rejects(CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo', tls }),
        (e: unknown) => e instanceof CertificateError && e.problem === 'unknown-issuer' && /not signed by a CA this client trusts/.test(e.message), why);
    }
    // Plain HTTP to the HTTPS port says what is wrong.
    await assert.rejects(CloudletClient.login({ authUrl: d.authUrl.replace('https:', 'http:'), username: 'alice', password: TEST_USERS.alice, project: 'demo' }),
      /does it speak HTTPS\?/);
  });

  it('Debian\'s openstack client works with --os-cacert, and refuses a wrong CA or none', async () => {
    const env = {
      PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_USERNAME: 'alice', OS_PASSWORD: TEST_USERS.alice, OS_PROJECT_NAME: 'demo',
      OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public',
    };
    const osc = (...args: string[]) => new Promise<{ ok: boolean; out: string }>((resolve) => {
      execFile('/usr/bin/python3', ['/usr/bin/openstack', ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => resolve({ ok: !err, out: err ? stderr || err.message : stdout }));
    });
    const token = await osc('--os-cacert', caFile, 'token', 'issue', '-f', 'json');
    assert.ok(token.ok, token.out);
    assert.ok(JSON.parse(token.out).id.length > 20);
    const servers = await osc('--os-cacert', caFile, 'server', 'list', '-f', 'json');
    assert.ok(servers.ok, servers.out);
    assert.deepEqual(JSON.parse(servers.out), []);

    for (const args of [['--os-cacert', wrongCaFile], []]) {
      const r = await osc(...args, 'token', 'issue');
      assert.ok(!r.ok, `openstack ${args.join(' ')} must refuse the certificate`);
      assert.match(r.out, /CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL/i);
    }
  });

  it('the cloudlet CLI logs in with --ca-file (kept with the login), and refuses without it', async () => {
    const env = { CLOUDLET_CONFIG_DIR: path.join(tmp, 'cli-ca'), CLOUDLET_PASSWORD: TEST_USERS.alice };
    const no = await cli(['login', d.url, '--user', 'alice', '--project', 'demo'], { env });
    assert.equal(no.code, 1);
    assert.match(no.stderr, /not signed by a CA this client trusts \(SHA-256 fingerprint [0-9A-F:]{95}\)/);
    const wrong = await cli(['login', d.url, '--user', 'alice', '--project', 'demo', '--ca-file', wrongCaFile], { env });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /not signed by a CA this client trusts/);
    const ok = await cli(['login', d.url, '--user', 'alice', '--project', 'demo', '--ca-file', caFile], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /certificates checked against .*ca\.pem/);
    const list = await cli(['servers', '--json'], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });
});

describe('HTTPS daemon: a self-signed certificate, pinned by its fingerprint', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  let cfg: string;

  before(async () => {
    cfg = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-tls-pin-'));
    d = await startDaemon({ ip: '127.0.0.2', args: ['--tls-self-signed'], keepData: true });
  });
  after(async () => { await d?.stop(); fs.rmSync(d.dataDir, { recursive: true, force: true }); fs.rmSync(cfg, { recursive: true, force: true }); });

  it('makes and keeps its certificate in the data folder and prints its fingerprint', async () => {
    const certFile = path.join(d.dataDir, 'tls', 'cert.pem');
    const x = spawnSync('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256', '-ext', 'subjectAltName'], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    assert.equal(x.stdout.match(/Fingerprint=([0-9A-F:]+)/)![1], d.fingerprint, 'the printed fingerprint is the certificate\'s (openssl agrees)');
    assert.match(x.stdout, /IP Address:127\.0\.0\.2/);
    assert.match(d.log(), new RegExp(`HTTPS certificate SHA-256 fingerprint ${d.fingerprint}`));
    assert.equal(fs.statSync(path.join(d.dataDir, 'tls', 'key.pem')).mode & 0o777, 0o600);
    const before = d.fingerprint;
    await d.restart();
    assert.equal(d.fingerprint, before, 'the same certificate after a restart');
  });

  it('the CLI shows the fingerprint of an unknown certificate, logs in with it pinned, and refuses a changed certificate loudly', async () => {
    const env = { CLOUDLET_CONFIG_DIR: cfg, CLOUDLET_PASSWORD: TEST_USERS.alice };
    const first = await cli(['login', d.url, '--user', 'alice', '--project', 'demo'], { env });
    assert.equal(first.code, 1);
    assert.ok(first.stderr.includes(`--fingerprint ${d.fingerprint}`), `the hint names the fingerprint to pin:\n${first.stderr}`);
    const ok = await cli(['login', d.url, '--user', 'alice', '--project', 'demo', '--fingerprint', d.fingerprint!.replace(/:/g, '').toLowerCase()], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`certificate of 127\\.0\\.0\\.2:${d.port} pinned \\(SHA-256 ${d.fingerprint}\\)`));
    assert.equal((await cli(['servers'], { env })).code, 0);

    // The daemon gets a new certificate (or someone answers in its place): the pin refuses it.
    const old = d.fingerprint!;
    await d.kill('SIGTERM');
    fs.rmSync(path.join(d.dataDir, 'tls'), { recursive: true });
    await d.start();
    assert.notEqual(d.fingerprint, old);
    const changed = await cli(['servers'], { env });
    assert.equal(changed.code, 1);
    assert.match(changed.stderr, new RegExp(`has CHANGED since it was trusted: pinned ${old}, presented ${d.fingerprint}`));
    await assert.rejects(CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo', tls: { pins: { [hostKey(d.url)]: old } } }),
      (e: unknown) => e instanceof CertificateError && e.problem === 'changed' && e.presented?.fingerprint === d.fingerprint);
  });
});

describe('HTTPS between daemons: handoff and synthesis from another host (real QEMU)', function () {
  this.timeout(900_000);
  let a: TestDaemon, b: TestDaemon;
  let overlay: string;
  let files: https.Server | undefined;
  let tmp: string;

  const login = (d: TestDaemon) => CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo', tls: d.trust });

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-tls-peer-'));
    overlay = await sampleOverlay();
    [a, b] = await Promise.all([
      startDaemon({ ip: '127.0.0.2', withTestBase: true, args: ['--tls-self-signed'] }),
      startDaemon({ ip: '127.0.0.3', withTestBase: true, args: ['--tls-self-signed'] }),
    ]);
  });
  after(async () => {
    files?.closeAllConnections(); files?.close();
    for (const d of [a, b]) if (d) { await d.stop(); killProcessesUsing(d.dataDir); }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('hands a running VM off between two self-signed HTTPS daemons, the destination pinned; a wrong pin is refused before the VM is touched', async () => {
    const ca = await login(a), cb = await login(b);
    // Synthesis from the daemon's own https image URL: it trusts its own certificate.
    const { id, jobId } = await ca.createServer({ name: 'tls-mover', overlayUrl: await uploadOverlay(ca, overlay) });
    assert.equal((await ca.watchJob(jobId!)).status, 'DONE');
    const src: Server = await ca.getServer(id);
    const port80 = (s: Server) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80'];
    assert.equal(await counter(port80(src)), 42);

    // The source does not trust b's self-signed certificate by itself, nor a wrong pin.
    for (const destFingerprint of [undefined, a.fingerprint]) {
      const bad = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destFingerprint });
      const end = await ca.watchJob(bad.jobId);
      assert.equal(end.status, 'ERROR');
      assert.match(end.error ?? '', destFingerprint ? /has CHANGED since it was trusted/ : /not signed by a CA this client trusts/);
      assert.match(end.error ?? '', /the VM kept running at the source/);
      assert.equal((await ca.getServer(src.id)).status, 'ACTIVE');
    }
    assert.equal(await counter(port80(src)), 43, 'the VM ran on at the source');

    const { jobId: hj } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'tls-moved', destFingerprint: b.fingerprint });
    const end = await ca.watchJob(hj);
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const r = end.result as HandoffReport;
    const moved = await cb.getServer(r.destination_server_id);
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(await counter(port80(moved)), 44, 'the counter goes on at the destination');
    assert.deepEqual(qemuPidsUnder(a.dataDir), []);
    await cb.deleteServer(moved.id);
  });

  it('synthesizes from another host\'s https overlay_url only with its certificate pinned (metadata.overlay_tls_fingerprint)', async () => {
    const peer = await makeCertificate({ commonName: 'files', ipAddresses: ['127.0.0.4'] });
    const bytes = fs.readFileSync(overlay);
    files = https.createServer({ cert: peer.certPem, key: peer.keyPem }, (req, res) => {
      const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      const end = m && m[2] ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1;
      res.writeHead(m ? 206 : 200, { 'content-length': end - start + 1, ...(m ? { 'content-range': `bytes ${start}-${end}/${bytes.length}` } : {}) });
      res.end(bytes.subarray(start, end + 1));
    });
    await new Promise<void>((r) => files!.listen(0, '127.0.0.4', r));
    const url = `https://127.0.0.4:${(files.address() as AddressInfo).port}/sample.overlay`;
    const cb = await login(b);

    await assert.rejects(cb.createServer({ name: 'untrusted', overlayUrl: url }), /overlay_url .*not signed by a CA this client trusts/);
    await assert.rejects(cb.createServer({ name: 'wrong-pin', overlayUrl: url, metadata: { overlay_tls_fingerprint: a.fingerprint! } }), /has CHANGED since it was trusted/);
    assert.deepEqual((await cb.listServers()).filter((s) => s.status !== 'DELETED'), [], 'no server for a refused overlay');

    const { id, jobId } = await cb.createServer({ name: 'pinned', overlayUrl: url, metadata: { overlay_tls_fingerprint: peer.fingerprint } });
    const end = await cb.watchJob(jobId!);
    assert.equal(end.status, 'DONE', `synthesis: ${end.error}`);
    const s = await cb.getServer(id);
    assert.equal(await counter((s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80']), 42);
    await cb.deleteServer(id);
  });
});
