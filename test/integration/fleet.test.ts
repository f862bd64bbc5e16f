/**
 * A fleet under one real Keystone (Debian's keystone 22.x under uWSGI, SQLite, 127.0.0.1) and two
 * cloudlet daemons as its regions (edge1 on 127.0.0.2, registered by the operator command; edge2 on
 * 127.0.0.3, registering itself, reached through a proxy on 127.0.0.4 that adds 2 x 15 ms): one
 * login for both, the standard openstack CLI per region, keystonemiddleware's rules (roles,
 * revocation within the cache bound, Keystone down), the nearest cloudlet (edge1; an unreachable
 * edge3 shown), and a handoff edge1 -> edge2 on the user's own token with the destination's check.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import type { TestDaemon } from './fixtures/daemon';
import { freePort, FLEET_USERS, type FleetUser, type TestKeystone } from './fixtures/keystone';
import { startFleet, waitForRegions, type Fleet } from './fixtures/fleet';
import { sampleOverlay, counter } from './fixtures/sampleOverlay';
import { CloudletClient, type HandoffReport, type Server } from '../../sandbox/client';
import { registerRegion } from '../../sandbox/client/regions';
import { projectRoot } from '../../sandbox/common/paths';

const execFileP = promisify(execFile);
/** The cache bound the daemons run with here (identity.cache_seconds). */
const CACHE_SECONDS = 5;
/** One way, edge2's proxy. */
const EDGE2_DELAY_MS = 15;
const port80 = (s: Server) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80'];

describe('fleet: one real Keystone, cloudlets as regions', function () {
  this.timeout(600_000);
  let fleet: Fleet;
  let ks: TestKeystone;
  let edge1: TestDaemon;
  let edge2: TestDaemon;
  let configDir: string;

  const login = (user: FleetUser) => CloudletClient.login({ authUrl: ks.authUrl, username: user, password: FLEET_USERS[user].password, project: FLEET_USERS[user].project });
  const cli = async (args: string[], env: Record<string, string> = {}) => {
    const r = await execFileP(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'), ...args], {
      env: { ...process.env, CLOUDLET_CLI_MAIN: '1', CLOUDLET_CONFIG_DIR: configDir, ...env }, timeout: 180_000,
    });
    return r.stdout;
  };
  const openstack = async (user: FleetUser, args: string[]) => {
    const u = FLEET_USERS[user];
    const r = await execFileP('openstack', [...args, '-f', 'json'], {
      env: { PATH: process.env.PATH, HOME: configDir, OS_AUTH_URL: ks.authUrl, OS_USERNAME: user, OS_PASSWORD: u.password, OS_PROJECT_NAME: u.project,
        OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public' },
      timeout: 120_000, maxBuffer: 16 << 20,
    }).catch((e: { stderr?: string; message: string }) => { throw new Error(`openstack ${args.join(' ')}: ${e.stderr || e.message}`); });
    return JSON.parse(r.stdout);
  };
  const status = async (d: TestDaemon, token: string) => (await fetch(`${d.url}/compute/v2.1/servers`, { headers: { 'x-auth-token': token } })).status;

  before(async () => {
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-fleet-'));
    // edge2 is "farther": everyone reaches it through the delaying proxy, which its catalog URLs name.
    fleet = await startFleet({ edge1RegistersItself: false, edge1Identity: { member_roles: ['member', 'edge-only'] }, cacheSeconds: CACHE_SECONDS, delayMs: EDGE2_DELAY_MS });
    ({ ks, edge1, edge2 } = fleet);
    // edge1 by the operator command, with the admin's openrc variables; edge2 registers itself.
    const registered = await cli(['region', 'register', 'edge1', edge1.url], {
      OS_AUTH_URL: ks.authUrl, OS_USERNAME: 'admin', OS_PASSWORD: FLEET_USERS.admin.password, OS_PROJECT_NAME: 'admin' });
    assert.match(registered, /edge1\s+compute\s+http:\/\/127\.0\.0\.2:\d+\/compute\/v2\.1\s+\(created\)/);
    // The CLI's login to the fleet, used by the nearest and handoff tests.
    await cli(['login', ks.authUrl, '--user', 'alice', '--project', 'demo', '--name', 'fleet'], { CLOUDLET_PASSWORD: FLEET_USERS.alice.password });
    await waitForRegions(ks, ['edge2'], () => edge2.log());
  });
  after(async () => {
    await fleet?.close();
    fs.rmSync(configDir, { recursive: true, force: true });
  });

  it('a daemon of the fleet names the Keystone it trusts and serves no Keystone of its own', async () => {
    const root = await (await fetch(`${edge1.url}/`)).json() as { region: string; identity_provider: string; services: Record<string, string> };
    assert.deepEqual([root.region, root.identity_provider, root.services.identity], ['edge1', 'keystone', ks.authUrl]);
    assert.equal((await fetch(`${edge1.url}/identity/v3/auth/tokens`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status, 404);
    const r = await fetch(`${edge1.url}/compute/v2.1/servers`);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), `Keystone uri="${ks.url}"`);
  });

  it('one login to Keystone reaches both cloudlets as regions; operator re-registration is idempotent', async () => {
    const alice = await login('alice');
    assert.deepEqual(alice.regions(), ['edge1', 'edge2']);
    for (const [region, d] of [['edge1', edge1], ['edge2', edge2]] as const) {
      const c = alice.inRegion(region);
      for (const type of ['compute', 'image', 'reservation', 'container', 'cloudlet']) assert.ok(c.endpoint(type).startsWith(d.url + '/'), `${region} ${type}`);
      assert.deepEqual(await c.listServers(), []);
      assert.equal((await c.listBases()).length, 1, `${region} advertises its base`);
    }
    const again = JSON.parse(await cli(['region', 'register', 'edge1', edge1.url, '--json'], {
      OS_AUTH_URL: ks.authUrl, OS_USERNAME: 'admin', OS_PASSWORD: FLEET_USERS.admin.password, OS_PROJECT_NAME: 'admin' }));
    assert.ok(again.endpoints.length >= 10 && again.endpoints.every((e: { change: string }) => e.change === 'unchanged'), JSON.stringify(again.endpoints));
    // A member may not change the catalog: the command says what it needs.
    await assert.rejects(cli(['region', 'register', 'edge9', edge1.url], {
      OS_AUTH_URL: ks.authUrl, OS_USERNAME: 'alice', OS_PASSWORD: FLEET_USERS.alice.password, OS_PROJECT_NAME: 'demo' }), /needs the admin role/);
  });

  it('the openstack CLI works per region: openstack --os-region-name edge2 server list', async () => {
    assert.deepEqual(await openstack('alice', ['--os-region-name', 'edge2', 'server', 'list']), []);
    const images = await openstack('alice', ['--os-region-name', 'edge1', 'image', 'list']);
    assert.equal(images.length, 1);
    const regions = (await openstack('admin', ['region', 'list'])).map((r: { Region: string }) => r.Region).sort();
    assert.deepEqual(regions, ['edge1', 'edge2']);
  });

  it('roles map to member and admin; a token whose roles admit nothing here is refused with 403', async () => {
    const rita = await ks.token('rita');
    for (const d of [edge1, edge2]) {
      const r = await fetch(`${d.url}/compute/v2.1/servers`, { headers: { 'x-auth-token': rita } });
      assert.equal(r.status, 403);
      assert.match(((await r.json()) as { forbidden: { message: string } }).forbidden.message, /rita has no role in project demo .*has: reader/);
    }
    // erin's role is admitted at edge1 only.
    const erin = await ks.token('erin');
    assert.deepEqual([await status(edge1, erin), await status(edge2, erin)], [200, 403]);
    const admin = (await login('admin')).inRegion('edge1');
    assert.equal(admin.session.projectName, 'admin');
    assert.ok((await admin.call('compute', 'GET', '/servers/detail?all_tenants=1')).servers);
  });

  it('a revoked token is refused at both cloudlets within the cache bound', async () => {
    const token = await ks.token('alice');
    assert.deepEqual([await status(edge1, token), await status(edge2, token)], [200, 200]);
    await ks.revoke(token);
    const revokedAt = Date.now();
    const refusedAfter: number[] = [];
    for (const d of [edge1, edge2]) {
      for (;;) {
        const s = await status(d, token);
        if (s === 401) { refusedAfter.push(Date.now() - revokedAt); break; }
        assert.equal(s, 200);
        assert.ok(Date.now() - revokedAt < (CACHE_SECONDS + 10) * 1000, `still accepted ${Date.now() - revokedAt} ms after revocation`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // Refused no later than the cache bound (plus one validation's time on a loaded machine).
    for (const ms of refusedAfter) assert.ok(ms <= (CACHE_SECONDS + 3) * 1000, `refused after ${ms} ms`);
  });

  it('Keystone down: cached validations keep working until they run out; new logins and new tokens fail clearly', async () => {
    const known = await ks.token('alice');
    const fresh = await ks.token('bob');
    assert.equal(await status(edge1, known), 200);
    const validatedAt = Date.now();
    await ks.stop();
    try {
      assert.equal(await status(edge1, known), 200, 'validated before Keystone went down');
      const r = await fetch(`${edge1.url}/compute/v2.1/servers`, { headers: { 'x-auth-token': fresh } });
      assert.equal(r.status, 503);
      assert.match(((await r.json()) as { serviceUnavailable: { message: string } }).serviceUnavailable.message,
        new RegExp(`identity service at ${ks.authUrl.replace(/\./g, '\\.')} is not reachable`));
      await assert.rejects(login('alice'), (e: Error) => /identity service \(Keystone\) at .* is not reachable/.test(e.message));
      await assert.rejects(cli(['login', ks.authUrl, '--user', 'alice', '--project', 'demo'], { CLOUDLET_PASSWORD: FLEET_USERS.alice.password }),
        /is not reachable/);
      // The cached validation runs out: from then on 503, never a stale yes.
      const wait = validatedAt + CACHE_SECONDS * 1000 + 500 - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      assert.equal(await status(edge1, known), 503);
    } finally {
      await ks.start();
    }
    // Keystone back: validated again. Its first validations after a start can outlast the daemon's
    // 10 s call timeout on a loaded machine (a 503 that says "timed out"), so a few tries.
    let last = '';
    for (const deadline = Date.now() + 90_000; ;) {
      const r = await fetch(`${edge1.url}/compute/v2.1/servers`, { headers: { 'x-auth-token': known } });
      if (r.status === 200) break;
      last = `${r.status} ${await r.text()}`;
      assert.equal(r.status, 503, last);
      assert.ok(Date.now() < deadline, `Keystone back, but the token is still not validated: ${last}`);
      await new Promise((res) => setTimeout(res, 1000));
    }
    if (last) console.log(`    (validated again after: ${last.slice(0, 300)})`);
    assert.ok(await login('alice'));
  });

  it('the CLI logs in once to the fleet and lists each region as a cloudlet', async () => {
    const out = await cli(['login', ks.url, '--user', 'alice', '--project', 'demo', '--name', 'fleet'], { CLOUDLET_PASSWORD: FLEET_USERS.alice.password });
    assert.match(out, /cloudlets \(regions\): fleet\/edge1, fleet\/edge2/);
    const rows = JSON.parse(await cli(['cloudlets', '--json'])) as { name: string; region: string; state: string; bases: string[] }[];
    assert.deepEqual(rows.map((r) => [r.name, r.region, r.state, r.bases.length]), [['fleet/edge1', 'edge1', 'ok', 1], ['fleet/edge2', 'edge2', 'ok', 1]]);
    assert.deepEqual(JSON.parse(await cli(['servers', '--cloudlet', 'fleet/edge2', '--json'])), []);
    await assert.rejects(cli(['servers', '--cloudlet', 'fleet/edge7']), /region edge7 is not in the catalog/);
  });

  it('synthesizes on the nearest cloudlet holding the base: probes, medians, the table; an unreachable region shown and skipped', async () => {
    const admin = await login('admin');
    const nowhere = `http://127.0.0.5:${await freePort('127.0.0.5')}`;  // nothing listens there
    await registerRegion(admin, 'edge3', { compute: `${nowhere}/compute/v2.1`, image: `${nowhere}/image`, cloudlet: `${nowhere}/cloudlet/v1` });
    try {
      const out = await cli(['synthesize', '--nearest', await sampleOverlay(), '--cloudlet', 'fleet', '--name', 'near', '--json']);
      const r = JSON.parse(out.trim().split('\n').pop()!) as { nearest: string; rows: { name: string; state: string; medianMs?: number; samplesMs: number[]; holdsBase?: boolean; note?: string }[]; server: Server };
      assert.equal(r.nearest, 'fleet/edge1');
      const row = (n: string) => r.rows.find((x) => x.name === n)!;
      assert.deepEqual(r.rows.map((x) => [x.name, x.state]), [['fleet/edge1', 'nearest'], ['fleet/edge2', 'farther'], ['fleet/edge3', 'unreachable']]);
      assert.equal(row('fleet/edge1').samplesMs.length, 5);
      assert.equal(row('fleet/edge2').samplesMs.length, 5);
      assert.ok(row('fleet/edge2').medianMs! >= 2 * EDGE2_DELAY_MS, `edge2's median ${row('fleet/edge2').medianMs} ms includes the proxy's 2 x ${EDGE2_DELAY_MS} ms`);
      assert.ok(row('fleet/edge1').medianMs! < row('fleet/edge2').medianMs!);
      assert.match(row('fleet/edge3').note!, /ECONNREFUSED/);
      assert.equal(r.server.status, 'ACTIVE');
      assert.equal(await counter(port80(r.server)), 42);
      // The table, as a user sees it.
      const shown = await cli(['synthesize', '--nearest', await sampleOverlay(), '--cloudlet', 'fleet', '--name', 'near2', '--probes', '3']);
      assert.match(shown, /^CLOUDLET\s+BASE\s+MEDIAN RTT\s+PROBES\s+STATE$/m);
      assert.match(shown, /^fleet\/edge1\s+yes\s+[\d.]+ ms\s+3\/3 answered .*nearest$/m);
      assert.match(shown, /^fleet\/edge3\s+\?\s+-\s+-\s+unreachable: /m);
      assert.match(shown, /^synthesizing on fleet\/edge1$/m);
      const alice = (await login('alice')).inRegion('edge1');
      const near2 = (await alice.listServers()).find((x) => x.name === 'near2')!;
      await alice.deleteServer(near2.id);
    } finally {
      assert.match(await cli(['region', 'remove', 'edge3'], {
        OS_AUTH_URL: ks.authUrl, OS_USERNAME: 'admin', OS_PASSWORD: FLEET_USERS.admin.password, OS_PROJECT_NAME: 'admin' }), /region edge3 removed \(\d+ endpoints\)/);
    }
    assert.deepEqual((await login('alice')).regions(), ['edge1', 'edge2']);
  });

  it('hands a server off within the fleet on the user\'s own token; the destination checks the user may run servers there', async () => {
    const alice = await login('alice');
    const near = (await alice.inRegion('edge1').listServers()).find((x) => x.name === 'near')!;
    assert.equal(await counter(port80(near)), 43);
    const report = JSON.parse(await cli(['handoff', 'near', '--cloudlet', 'fleet/edge1', '--to', 'edge2', '--name', 'near-moved', '--json'])) as HandoffReport;
    assert.ok(report.bytes_sent > 0 && report.downtime_ms > 0, JSON.stringify(report));
    const moved = await alice.inRegion('edge2').getServer(report.destination_server_id);
    assert.deepEqual([moved.name, moved.status, moved.tenant_id], ['near-moved', 'ACTIVE', alice.session.projectId]);
    assert.equal(await counter(port80(moved)), 44, 'the back-end goes on at edge2');
    assert.deepEqual((await alice.inRegion('edge1').listServers()).map((x) => x.name), []);

    // erin's role is admitted at edge1 only: her own token is refused at edge2, so the VM stays at edge1.
    const erin = await login('erin');
    const e1 = erin.inRegion('edge1');
    const base = (await e1.listBases())[0];
    const { id, jobId } = await e1.createServer({ name: 'erins', imageRef: base.id });
    assert.equal((await e1.watchJob(jobId!)).status, 'DONE');
    const h = await e1.handoff(id, { handoffUrl: erin.inRegion('edge2').endpoint('compute'), destToken: erin.token });
    const end = await e1.watchJob(h.jobId);
    assert.equal(end.status, 'ERROR');
    assert.match(String(end.error), /refused \(403\).*erin has no role in project demo/);
    const after = await e1.getServer(id);
    assert.equal(after.status, 'ACTIVE');
    assert.deepEqual((await alice.inRegion('edge2').listServers()).map((x) => x.name), ['near-moved']);
    await e1.deleteServer(id);
  });
});
