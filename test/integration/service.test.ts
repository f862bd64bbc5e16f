/**
 * `cloudlet service install|status|uninstall` (issue 15): the unit it writes passes
 * `systemd-analyze verify` (systemd is not PID 1 here, so nothing is enabled: --no-enable,
 * --unit-dir), is hardened (dedicated user, ProtectSystem, PrivateTmp, only /dev/kvm and
 * /dev/net/tun, no capabilities), hands TLS files over with LoadCredential; bad options write nothing.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { makeCertificate } from '../../sandbox/cloudlet/certificate';

const MAIN = path.join(projectRoot(), 'sandbox/cli/main.ts');
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: projectRoot(), encoding: 'utf8', env: { ...process.env, CLOUDLET_CLI_MAIN: '1' } });
const verify = (file: string, user = false) => spawnSync('systemd-analyze', [...(user ? ['--user'] : []), 'verify', file], { encoding: 'utf8' });

describe('cloudlet service: a hardened systemd unit', function () {
  this.timeout(300_000);
  let units: string, data: string, tmp: string;

  before(function () {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) this.skip();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-svc-'));
    units = path.join(tmp, 'units');
    // Not under /tmp: the service's /tmp is private, so install refuses a data folder there.
    data = process.geteuid?.() === 0 ? fs.mkdtempSync('/var/lib/cloudlet-service-test-') : path.join(projectRoot(), `.tmp-service-test-${process.pid}`);
  });
  after(() => { fs.rmSync(tmp, { recursive: true, force: true }); fs.rmSync(data, { recursive: true, force: true }); });

  it('writes a system unit that systemd-analyze verify accepts, hardened, running as its own user', () => {
    const r = cli(['service', 'install', '--listen', '0.0.0.0:8774', '--data', data, '--tls-self-signed', '--run-as', 'daemon', '--unit-dir', units, '--no-enable']);
    assert.equal(r.status, 0, r.stderr);
    const file = path.join(units, 'cloudlet.service');
    const v = verify(file);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', `no warnings: ${v.stderr}`);
    const unit = fs.readFileSync(file, 'utf8');
    const has = (line: string) => assert.ok(unit.split('\n').includes(line), `${line} in\n${unit}`);
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} \\S+/bin/cloudlet serve --listen 0\\.0\\.0\\.0:8774 --data ${data} --tls-self-signed$`, 'm'));
    for (const l of ['User=daemon', 'SupplementaryGroups=kvm', 'NoNewPrivileges=yes', 'ProtectSystem=strict', `ReadWritePaths=${data}`, 'PrivateTmp=yes',
      'DevicePolicy=closed', 'CapabilityBoundingSet=', 'AmbientCapabilities=', 'KillMode=process', 'WantedBy=multi-user.target']) has(l);
    assert.deepEqual(unit.split('\n').filter((l) => l.startsWith('DeviceAllow=')), ['DeviceAllow=/dev/kvm rw', 'DeviceAllow=/dev/net/tun rw'], 'KVM and TUN only');
    assert.doesNotMatch(unit, /MemoryDenyWriteExecute/, 'Node\'s JIT and QEMU\'s TCG need writable code');
    if (process.geteuid?.() === 0) assert.equal(fs.statSync(data).uid, Number(spawnSync('id', ['-u', 'daemon'], { encoding: 'utf8' }).stdout), 'the data folder is the service user\'s');

    const st = cli(['service', 'status', '--unit-dir', units]);
    assert.equal(st.status, 0, st.stderr);
    assert.match(st.stdout, /listen\s+0\.0\.0\.0:8774/);
    assert.match(st.stdout, /TLS\s+self-signed \(not made yet/);
    const un = cli(['service', 'uninstall', '--unit-dir', units]);
    assert.equal(un.status, 0, un.stderr);
    assert.ok(!fs.existsSync(file));
    assert.match(un.stdout, /the data folder .* stays/);
  });

  it('hands a certificate and key over with LoadCredential (the key may stay root\'s); a key of another certificate writes nothing', async () => {
    const cert = await makeCertificate({ commonName: 'edge', dnsNames: ['edge.example'] });
    const other = await makeCertificate({ commonName: 'other' });
    const [c, k, k2] = ['cert.pem', 'key.pem', 'other.key'].map((n) => path.join(tmp, n));
    fs.writeFileSync(c, cert.certPem); fs.writeFileSync(k, cert.keyPem, { mode: 0o600 }); fs.writeFileSync(k2, other.keyPem, { mode: 0o600 });

    const bad = cli(['service', 'install', '--listen', '0.0.0.0:8774', '--data', data, '--tls-cert', c, '--tls-key', k2, '--run-as', 'daemon', '--unit-dir', units, '--no-enable']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /does not belong to the certificate/);
    assert.ok(!fs.existsSync(path.join(units, 'cloudlet.service')), 'nothing written');

    const r = cli(['service', 'install', '--listen', '0.0.0.0:443', '--data', data, '--tls-cert', c, '--tls-key', k, '--run-as', 'daemon', '--unit-dir', units, '--no-enable', '--name', 'edge']);
    assert.equal(r.status, 0, r.stderr);
    const file = path.join(units, 'edge.service');
    const v = verify(file);
    assert.equal(v.status, 0, v.stderr);
    const unit = fs.readFileSync(file, 'utf8');
    assert.match(unit, new RegExp(`^LoadCredential=tls\\.crt:${c}$`, 'm'));
    assert.match(unit, new RegExp(`^LoadCredential=tls\\.key:${k}$`, 'm'));
    assert.match(unit, /--tls-cert %d\/tls\.crt --tls-key %d\/tls\.key/);
    assert.match(unit, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m, 'port 443: the one capability it keeps');
  });

  it('refuses plain HTTP off loopback, a data folder in /tmp, and paths a unit would mangle', () => {
    const cases: [string[], RegExp][] = [
      [['--listen', '0.0.0.0:8774', '--data', data], /refusing plain HTTP on 0\.0\.0\.0/],
      [['--listen', '127.0.0.1:8774', '--data', path.join(os.tmpdir(), 'x')], /private \/tmp/],
      [['--listen', '127.0.0.1:8774', '--data', '/var/lib/with space'], /characters a systemd unit would mangle/],
    ];
    for (const [args, want] of cases) {
      const r = cli(['service', 'install', ...args, '--run-as', 'daemon', '--unit-dir', path.join(tmp, 'none'), '--no-enable']);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, want);
      assert.ok(!fs.existsSync(path.join(tmp, 'none')), 'nothing written');
    }
  });

  it('writes a user unit (no dedicated user) on loopback without TLS', () => {
    const r = cli(['service', 'install', '--user', '--listen', '127.0.0.1:8774', '--data', data, '--unit-dir', units, '--no-enable', '--name', 'mine']);
    assert.equal(r.status, 0, r.stderr);
    const unit = fs.readFileSync(path.join(units, 'mine.service'), 'utf8');
    assert.doesNotMatch(unit, /^User=/m);
    assert.match(unit, /^WantedBy=default\.target$/m);
    assert.match(unit, /^PrivateTmp=yes$/m);
  });
});
