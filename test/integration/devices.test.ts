/**
 * Edge devices end to end: three real dockerd engines enrolled as devices, a real docker-registry
 * on loopback, the real daemon (`cloudlet serve`) driven through sandbox/client and, at the end,
 * through Debian's blazar client. No mocks.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promisify } from 'util';
import Database from '../../sandbox/common/sqlite';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { startDaemon, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { startRegistry, freePort, type RegistryFixture } from './fixtures/registry';
import { startDockerEngines, importAndPush, type DockerEngines, type DockerEngine } from './fixtures/dockerEngines';
import { CloudletClient, ApiError } from '../../sandbox/client';
import { devicesApi, type DevicesApi, type Lease } from '../../sandbox/client/devices';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LABEL_LEASE = 'org.cloudlet.lease';

/** Lease length for the short-lease tests: the end-to-end lease and the crash test's margins. */
const SHORT_LEASE_S = Number(process.env.CLOUDLET_TEST_LEASE_S ?? 30);
/** The end-to-end lease: long enough for a container pull, start, HTTP, logs and exec on a busy machine. */
const E2E_LEASE_S = Math.max(SHORT_LEASE_S, 45);

async function login(d: TestDaemon, user: keyof typeof TEST_USERS): Promise<DevicesApi> {
  const project = { admin: 'admin', alice: 'demo', bob: 'other', carol: 'demo' }[user];
  return devicesApi(await CloudletClient.login({ authUrl: d.authUrl, username: user, password: TEST_USERS[user], project }));
}

/** Engine containers that belong to a lease of ours (by label): [engine name, lease id] */
function engineContainers(e: DockerEngine): { id: string; lease: string; running: boolean }[] {
  const out = e.docker(['ps', '-a', '--filter', `label=${LABEL_LEASE}`, '--format', `{{.ID}} {{.Label "${LABEL_LEASE}"}} {{.State}}`]).trim();
  return out ? out.split('\n').map((l) => { const [id, lease, state] = l.split(' '); return { id, lease, running: state === 'running' }; }) : [];
}

async function httpGet(url: string): Promise<{ status: number; text: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, text: await r.text() };
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

function expectApi(status: number, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ApiError, `expected an API error, got ${String(e)}`);
    assert.equal(e.httpStatus, status, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

describe('edge devices: inventory, Blazar leases, Zun containers on real Docker engines', function () {
  this.timeout(600_000);
  let engines: DockerEngines;
  let registry: RegistryFixture;
  let daemon: TestDaemon;
  let admin: DevicesApi, alice: DevicesApi, bob: DevicesApi;
  let image: string;
  const deviceByName: Record<string, { id: string; engine: DockerEngine }> = {};

  before(async () => {
    [engines, registry] = await Promise.all([startDockerEngines(3), startRegistry()]);
    image = `${registry.host}/cloudlet-test/httpd:1`;
    importAndPush(engines.list[0], image, 'hello from a reserved device\n');
    daemon = await startDaemon({ ip: '127.0.0.2', env: { CLOUDLET_DEVICE_HEALTH_INTERVAL_MS: '1000' } });
    [admin, alice, bob] = await Promise.all([login(daemon, 'admin'), login(daemon, 'alice'), login(daemon, 'bob')]);
    const specs = [
      { name: 'pi-1', machineName: 'raspberrypi4-64', model: 'Raspberry Pi 4 Model B', properties: { memory_mb: 4096 } },
      { name: 'pi-2', machineName: 'raspberrypi4-64', model: 'Raspberry Pi 4 Model B', properties: { memory_mb: 8192 } },
      { name: 'nano-1', machineName: 'jetson-nano', model: 'Jetson Nano', properties: { memory_mb: 4096 } },
    ];
    for (const [i, s] of specs.entries()) {
      const hw = await admin.enrollDevice({ ...s, engineEndpoint: engines.list[i].endpoint });
      deviceByName[s.name] = { id: hw.uuid, engine: engines.list[i] };
    }
  });

  after(async () => {
    await daemon?.stop();
    await Promise.all([engines?.close(), registry?.close()]);
  });

  const engineOf = (name: string) => deviceByName[name].engine;
  const deviceName = (id: string) => Object.entries(deviceByName).find(([, v]) => v.id === id)![0];

  describe('inventory (admin only)', () => {
    it('admin enrolls, lists with health from the engine ping, and patches authorized projects and properties', async () => {
      const hw = await admin.listHardware();
      assert.deepEqual(hw.map((h) => h.name), ['nano-1', 'pi-1', 'pi-2']);
      assert.ok(hw.every((h) => h.health.status === 'up'), JSON.stringify(hw.map((h) => h.health)));
      assert.ok(hw.every((h) => h.engine_endpoint.startsWith('unix://')));
      const patched = await admin.patchDevice('nano-1', [
        { op: 'add', path: '/properties/location', value: 'lab-2' },
        { op: 'add', path: '/authorized_projects/-', value: bob.client.session.projectId },
      ]);
      assert.equal(patched.properties.location, 'lab-2');
      assert.deepEqual(patched.authorized_projects, [bob.client.session.projectId]);
      // Only bob's project may now use nano-1; alice does not even see it.
      assert.deepEqual((await alice.listDevices()).map((d) => d.name), ['pi-1', 'pi-2']);
      await admin.patchDevice('nano-1', [{ op: 'remove', path: '/authorized_projects/0' }]);
      assert.deepEqual((await alice.listDevices()).map((d) => d.name), ['nano-1', 'pi-1', 'pi-2']);
    });

    it('users never see engine endpoints', async () => {
      const devices = await alice.listDevices();
      assert.equal(devices.length, 3);
      assert.ok(!JSON.stringify(devices).includes('unix://'));
      assert.ok(devices.every((d) => d.health.status === 'up' && d.machine_name));
      await assert.rejects(alice.listHardware(), expectApi(403));
    });

    it('a non-admin enrolling a device gets 403', async () => {
      await assert.rejects(alice.enrollDevice({ name: 'rogue', machineName: 'raspberrypi4-64', engineEndpoint: engines.list[0].endpoint }), expectApi(403));
      assert.equal((await admin.listHardware()).length, 3);
    });
  });

  describe('security and bad input', () => {
    let pending: Lease;
    let active: Lease;

    it('end date before start date is 400', async () => {
      const start = new Date(Date.now() + 3600_000);
      await assert.rejects(alice.createLease({ name: 'backwards', start, end: new Date(start.getTime() - 600_000) }),
        expectApi(400, /must be later than start_date/));
    });

    it('an unknown filter operator is 400 naming it', async () => {
      await assert.rejects(alice.createLease({ name: 'bad-filter', minutes: 5, filter: ['like', '$machine_name', 'raspberry%'] }),
        expectApi(400, /unknown operator 'like'/));
    });

    it('a container without a reservation is 400', async () => {
      await assert.rejects(alice.runContainer({ reservationId: '', image }), expectApi(400, /hints.reservation is required/));
      await assert.rejects(alice.client.call('container', 'POST', '/containers', { image }), expectApi(400, /hints.reservation is required/));
    });

    it('a lease not yet active is 409; another project\'s reservation is 403', async () => {
      const start = new Date(Date.now() + 3 * 3600_000);
      pending = await alice.createLease({ name: 'later', start, minutes: 10, machineName: 'raspberrypi4-64' });
      assert.equal(pending.status, 'PENDING');
      await assert.rejects(alice.runContainer({ reservationId: pending.reservations[0].id, image }), expectApi(409, /PENDING, not ACTIVE/));
      active = await alice.createLease({ name: 'now', minutes: 5, machineName: 'jetson-nano' });
      assert.equal(active.status, 'ACTIVE');
      await assert.rejects(bob.runContainer({ reservationId: active.reservations[0].id, image }), expectApi(403, /another project/));
      await assert.rejects(bob.getLease(active.id), expectApi(403));
      assert.ok(!(await bob.listLeases()).some((l) => l.id === active.id));
    });

    after(async () => {
      for (const l of [pending, active]) if (l) await alice.deleteLease(l.id);
    });
  });

  describe('end to end', () => {
    it('reserves one raspberrypi4-64 for 45 seconds, runs an HTTP server from the local registry on it, answers on loopback, shows logs; when the lease ends the container is gone', async () => {
      const lease = await alice.createLease({ name: 'short-e2e', start: 'now', end: new Date(Date.now() + E2E_LEASE_S * 1000), machineName: 'raspberrypi4-64', exactSeconds: true });
      assert.equal(lease.status, 'ACTIVE');
      const length = Date.parse(lease.end_date + 'Z') - Date.parse(lease.start_date + 'Z');
      assert.ok(length > (E2E_LEASE_S - 10) * 1000 && length <= E2E_LEASE_S * 1000, `lease length ${length} ms`);
      const res = lease.reservations[0];
      assert.equal(res.status, 'active');
      assert.equal(res.allocated_devices.length, 1);
      const device = deviceName(res.allocated_devices[0]);
      assert.match(device, /^pi-/);
      const port = await freePort('127.0.0.1');
      const c = await alice.runContainer({
        reservationId: res.id, image, name: 'web', exposedPorts: [`${port}/tcp`], environment: { GREETING: 'hi' },
        command: ['sh', '-c', `echo "serving $GREETING on ${port}"; exec httpd -f -vv -p 127.0.0.1:${port} -h /www`],
      });
      assert.equal(c.status, 'Creating');
      const running = await alice.waitContainer(c.uuid, ['Running'], { timeoutMs: 120_000 });
      assert.equal(running.device_name, device);
      const page = await until('the HTTP answer', async () => { const r = await httpGet(`http://127.0.0.1:${port}/`); return r.status === 200 && r; }, 30_000);
      assert.equal(page.text, 'hello from a reserved device\n');
      const logs = await until('the request in the logs', async () => { const l = await alice.containerLogs(c.uuid); return /serving hi/.test(l) && l; }, 30_000);
      assert.match(logs, new RegExp(`serving hi on ${port}`));
      const ex = await alice.execute(c.uuid, 'cat /www/index.html');
      assert.deepEqual(ex, { output: 'hello from a reserved device\n', exit_code: 0, exec_id: null, url: null });
      assert.equal(engineContainers(engineOf(device)).filter((x) => x.lease === lease.id && x.running).length, 1);
      assert.ok(Date.now() < Date.parse(lease.end_date + 'Z'), 'the steps above ran while the lease was active (a very slow machine needs a larger CLOUDLET_TEST_LEASE_S)');

      const ended = await alice.waitLease(lease.id, ['TERMINATED'], { timeoutMs: 240_000, intervalMs: 2000 });
      assert.ok(Date.now() >= Date.parse(lease.end_date + 'Z'));
      assert.equal(ended.reservations[0].status, 'deleted');
      assert.deepEqual(ended.events.map((e) => `${e.event_type}:${e.status}`), ['start_lease:DONE', 'before_end_lease:DONE', 'end_lease:DONE']);
      assert.deepEqual(engineContainers(engineOf(device)), [], 'the container is gone from the engine');
      await assert.rejects(alice.getContainer(c.uuid), expectApi(404));
      await assert.rejects(httpGet(`http://127.0.0.1:${port}/`));
      await alice.deleteLease(lease.id);
    });
  });

  describe('faults', () => {
    it('daemon killed during an active lease: after restart the lease goes on and ends on time; a lease that ended meanwhile is ended at once and its containers removed', async () => {
      // The long lease ends SHORT_LEASE_S after the short one: the margin for a slow restart (tsx
      // start-up on a busy machine; a few seconds when idle) and the checks after it.
      const shortS = Math.max(15, Math.round(SHORT_LEASE_S * 0.6));
      const short = await alice.createLease({ name: 'ends-while-down', start: 'now', end: new Date(Date.now() + shortS * 1000), filter: ['==', '$name', 'pi-1'], exactSeconds: true });
      const long = await alice.createLease({ name: 'outlives-crash', start: 'now', end: new Date(Date.now() + (shortS + SHORT_LEASE_S) * 1000), filter: ['==', '$name', 'pi-2'], exactSeconds: true });
      const cs = await alice.runContainer({ reservationId: short.reservations[0].id, image, command: ['sleep', '600'], name: 'crash-short' });
      const cl = await alice.runContainer({ reservationId: long.reservations[0].id, image, command: ['sleep', '600'], name: 'crash-long' });
      await Promise.all([alice.waitContainer(cs.uuid), alice.waitContainer(cl.uuid)]);

      await daemon.kill('SIGKILL');
      const shortEnd = Date.parse(short.end_date + 'Z');
      await sleep(Math.max(0, shortEnd - Date.now()) + 2000);
      // Nobody was there to end it: the short lease's container still runs on pi-1.
      assert.equal(engineContainers(engineOf('pi-1')).filter((c) => c.lease === short.id && c.running).length, 1);
      assert.ok(Date.now() < Date.parse(long.end_date + 'Z'), 'the long lease must still be running for this test to mean anything');

      const restartAt = Date.now();
      await daemon.start();  // returns once the daemon listens, i.e. after its recovery
      console.log(`      (daemon restart took ${Date.now() - restartAt} ms; margin ${Math.round((Date.parse(long.end_date + 'Z') - Date.now()) / 1000)} s to the long lease's end)`);
      const s = await alice.getLease(short.id);
      assert.equal(s.status, 'TERMINATED');
      assert.deepEqual(engineContainers(engineOf('pi-1')), [], 'the ended lease\'s container was removed at restart');
      await assert.rejects(alice.getContainer(cs.uuid), expectApi(404));
      const l = await alice.getLease(long.id);
      assert.equal(l.status, 'ACTIVE', 'the long lease outlived the restart (a very slow machine needs a larger CLOUDLET_TEST_LEASE_S)');
      assert.equal((await alice.getContainer(cl.uuid)).status, 'Running');
      assert.equal((await alice.execute(cl.uuid, 'echo still here')).output, 'still here\n');

      const ended = await alice.waitLease(long.id, ['TERMINATED'], { timeoutMs: 180_000 });
      const endEvent = ended.events.find((e) => e.event_type === 'end_lease')!;
      assert.equal(endEvent.status, 'DONE');
      assert.equal(endEvent.time, long.end_date, 'the end was not moved by the restart');
      assert.ok(Date.now() >= Date.parse(long.end_date + 'Z'));
      assert.deepEqual(engineContainers(engineOf('pi-2')), []);
      await Promise.all([alice.deleteLease(short.id), alice.deleteLease(long.id)]);
    });

    it('a device engine down: the lease shows degraded and the error names the device; nothing else is affected', async () => {
      const onPi = await alice.createLease({ name: 'healthy', minutes: 10, filter: ['==', '$name', 'pi-1'] });
      const onNano = await alice.createLease({ name: 'doomed', minutes: 10, machineName: 'jetson-nano' });
      const a = await alice.runContainer({ reservationId: onPi.reservations[0].id, image, command: ['sleep', '600'], name: 'healthy-c' });
      const b = await alice.runContainer({ reservationId: onNano.reservations[0].id, image, command: ['sleep', '600'], name: 'doomed-c' });
      await Promise.all([alice.waitContainer(a.uuid), alice.waitContainer(b.uuid)]);
      assert.equal((await alice.getLease(onNano.id)).degraded, false);

      await engineOf('nano-1').stop();
      const degraded = await until('the lease to show degraded', async () => { const l = await alice.getLease(onNano.id); return l.degraded && l; }, 30_000);
      assert.match(degraded.degraded_reason!, /device nano-1 is unreachable/);
      assert.equal(degraded.reservations[0].resources_changed, true);
      assert.equal(degraded.status, 'ACTIVE');
      await assert.rejects(alice.containerLogs(b.uuid), expectApi(503, /device nano-1 is unreachable/));
      await assert.rejects(alice.execute(b.uuid, 'true'), expectApi(503, /nano-1/));
      await assert.rejects(alice.createLease({ name: 'wants-nano', minutes: 5, machineName: 'jetson-nano' }), expectApi(409, /nano-1 is .*unreachable/));
      assert.equal((await alice.listDevices()).find((d) => d.name === 'nano-1')!.health.status, 'down');

      // Nothing else is affected.
      const healthy = await alice.getLease(onPi.id);
      assert.equal(healthy.degraded, false);
      assert.equal(healthy.degraded_reason, null);
      assert.equal((await alice.execute(a.uuid, 'echo fine')).output, 'fine\n');
      const other = await alice.createLease({ name: 'meanwhile', minutes: 5, filter: ['==', '$name', 'pi-2'] });
      assert.equal(other.status, 'ACTIVE');
      assert.equal(other.degraded, false);
      assert.equal((await alice.listLeases()).filter((l) => l.degraded).map((l) => l.name).join(), 'doomed');

      await engineOf('nano-1').start();
      await until('the lease to recover', async () => !(await alice.getLease(onNano.id)).degraded, 30_000);
      for (const l of [onPi, onNano, other]) assert.equal((await alice.endLease(l.id)).status, 'TERMINATED');
      for (const e of engines.list) assert.deepEqual(engineContainers(e), [], `${e.name} still has lease containers`);
      for (const l of [onPi, onNano, other]) await alice.deleteLease(l.id);
    });
  });

  describe('CLI', () => {
    it('cloudlet devices | lease create/list/show/extend/end | container run/logs/exec/rm through the client', async () => {
      const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-devices-'));
      const cli = async (args: string[], env: Record<string, string> = {}) => {
        const r = await execFileP(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'), ...args], {
          env: { ...process.env, CLOUDLET_CLI_MAIN: '1', CLOUDLET_CONFIG_DIR: configDir, ...env }, timeout: 120_000,
        });
        return r.stdout;
      };
      try {
        await cli(['login', daemon.url, '--user', 'alice', '--project', 'demo'], { CLOUDLET_PASSWORD: TEST_USERS.alice });
        const devices = await cli(['devices']);
        assert.match(devices, /pi-1\s+raspberrypi4-64\s+Raspberry Pi 4 Model B\s+up/);
        assert.ok(!devices.includes('unix://'));
        const created = JSON.parse(await cli(['lease', 'create', 'cli-lease', '--machine-name', 'raspberrypi4-64', '--minutes', '10', '--json']));
        assert.equal(created.status, 'ACTIVE');
        assert.match(await cli(['lease', 'list']), /cli-lease\s+ACTIVE\s+pi-\d/);
        assert.match(await cli(['lease', 'show', 'cli-lease']), /event end_lease at .*: UNDONE/);
        assert.match(await cli(['lease', 'extend', 'cli-lease', '--minutes', '5']), /now ends/);
        const extended = await alice.getLease(created.id);
        assert.equal(Date.parse(extended.end_date + 'Z') - Date.parse(created.end_date + 'Z'), 5 * 60_000);
        const run = await cli(['container', 'run', '--lease', 'cli-lease', '--name', 'cli-c', '-e', 'WHO=cli', image, '--', 'sh', '-c', 'echo hello $WHO; exec sleep 600']);
        assert.match(run, /cli-c\s+Running\s+pi-\d/);
        assert.equal(await until('logs', async () => { const l = await cli(['container', 'logs', 'cli-c']); return l.includes('hello cli') && l; }), 'hello cli\n');
        assert.equal(await cli(['container', 'exec', 'cli-c', '--', 'echo', 'two words']), 'two words\n');
        assert.match(await cli(['container', 'rm', 'cli-c']), /removed cli-c/);
        assert.match(await cli(['lease', 'end', 'cli-lease']), /TERMINATED/);
        await alice.deleteLease(created.id);
      } finally {
        fs.rmSync(configDir, { recursive: true, force: true });
      }
    });
  });

  describe('standard Blazar client (Debian python3-blazarclient)', () => {
    const openstack = async (args: string[]) => {
      const env: Record<string, string | undefined> = {
        ...process.env, OS_AUTH_URL: daemon.authUrl, OS_USERNAME: 'alice', OS_PASSWORD: TEST_USERS.alice, OS_PROJECT_NAME: 'demo',
        OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public',
        http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '', no_proxy: '127.0.0.0/8',
      };
      const r = await execFileP('/usr/bin/openstack', args, { env, timeout: 120_000 });
      return r.stdout;
    };
    // `lease create` prints "Created a new lease:" before the JSON.
    const json = (out: string) => JSON.parse(out.slice(out.search(/[[{]/)));

    it('creates, lists, shows and deletes a device lease with `openstack reservation lease ...`', async () => {
      const end = new Date(Date.now() + 30 * 60_000).toISOString().slice(0, 16).replace('T', ' ');
      // blazarclient 3.5 only parses --reservation keys it knows for physical:host; mentioning
      // physical:host in an ignored key makes it parse resource_type=device (see docs/devices.md).
      const created = json(await openstack(['reservation', 'lease', 'create', '-f', 'json', '--end-date', end,
        '--reservation', 'resource_type=device,min=1,max=1,resource_properties=["==","$machine_name","raspberrypi4-64"],hypervisor_properties=physical:host',
        'blazar-cli-lease']));
      assert.equal(created.name, 'blazar-cli-lease');
      assert.equal(created.status, 'ACTIVE');
      const reservations = typeof created.reservations === 'string' ? JSON.parse(created.reservations) : created.reservations;
      const res = Array.isArray(reservations) ? reservations[0] : reservations;
      assert.equal(res.resource_type, 'device');
      assert.match(deviceName(res.allocated_devices[0]), /^pi-/);

      const list = json(await openstack(['reservation', 'lease', 'list', '-f', 'json']));
      assert.ok(list.some((l: { id: string; name: string }) => l.id === created.id && l.name === 'blazar-cli-lease'), JSON.stringify(list));
      const shown = json(await openstack(['reservation', 'lease', 'show', '-f', 'json', created.id]));
      assert.equal(shown.id, created.id);
      assert.equal(shown.end_date, `${end.replace(' ', 'T')}:00.000000`);
      await openstack(['reservation', 'lease', 'delete', created.id]);
      await assert.rejects(alice.getLease(created.id), expectApi(404));
    });
  });

  describe('concurrency', () => {
    it('50 concurrent lease requests for overlapping windows: never two overlapping reservations of one device (database and engines), every refusal a 409 with the reason', async () => {
      const t0 = Date.now();
      // Two races at once over the three devices. Ten leases from now for 10 minutes (identical
      // windows: exactly three can win). Forty later windows of 60-90 s starting 10-40 s apart
      // (heavy overlap among them), all after the first ten end: which request the daemon happens
      // to handle first (any order on a loaded machine) cannot take a device from the first race.
      const nowEnd = t0 + 600_000;
      const requests = Array.from({ length: 50 }, (_, i) => {
        if (i % 5 === 0) return alice.createLease({ name: `race-${i}`, start: 'now', end: new Date(nowEnd), exactSeconds: true });
        const start = nowEnd + 60_000 + (i % 5) * 10_000;
        return alice.createLease({ name: `race-${i}`, start: new Date(start), end: new Date(start + 60_000 + (i % 3) * 15_000), exactSeconds: true });
      });
      const results = await Promise.allSettled(requests);
      const granted = results.filter((r): r is PromiseFulfilledResult<Lease> => r.status === 'fulfilled').map((r) => r.value);
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as ApiError);
      assert.equal(granted.length + refused.length, 50);
      assert.ok(granted.length >= 6, `granted ${granted.length}`);
      for (const e of refused) {
        assert.ok(e instanceof ApiError && e.httpStatus === 409, String(e));
        assert.match(e.message, /Not enough devices available: .* (is reserved until|free)/);
      }

      // The database: no two live allocations of one device overlap.
      const db = new Database(path.join(daemon.dataDir, 'cloudlet.db'), { readonly: true });
      const rows = db.prepare('SELECT device_id, start_at, end_at FROM device_allocations WHERE active = 1').all() as { device_id: string; start_at: number; end_at: number }[];
      db.close();
      for (const a of rows) for (const b of rows) {
        if (a !== b && a.device_id === b.device_id) assert.ok(a.end_at <= b.start_at || b.end_at <= a.start_at, `overlap on ${deviceName(a.device_id)}`);
      }
      // The engines: a container for every active lease lands on its device, and no engine ever
      // holds containers of two leases.
      // A lease from now is ACTIVE by the time its creation answers; the three devices, three of them.
      const activeNow = granted.filter((l) => l.status === 'ACTIVE');
      assert.deepEqual(granted.filter((l) => l.name.match(/^race-\d*[05]$/)).map((l) => l.status), ['ACTIVE', 'ACTIVE', 'ACTIVE']);
      assert.equal(activeNow.length, 3, `active ${activeNow.length}`);
      for (const l of activeNow) {
        const c = await alice.runContainer({ reservationId: l.reservations[0].id, image, command: ['sleep', '300'], name: `race-c-${l.name}` });
        await alice.waitContainer(c.uuid, ['Running'], { timeoutMs: 120_000 });
      }
      for (const [name, { engine }] of Object.entries(deviceByName)) {
        const leases = new Set(engineContainers(engine).map((c) => c.lease));
        assert.ok(leases.size <= 1, `${name} holds containers of ${leases.size} leases`);
        for (const lease of leases) {
          const l = activeNow.find((x) => x.id === lease)!;
          assert.equal(deviceName(l.reservations[0].allocated_devices[0]), name);
        }
      }
      await Promise.all(granted.map((l) => alice.deleteLease(l.id)));
      for (const e of engines.list) assert.deepEqual(engineContainers(e), [], `${e.name} still has lease containers`);
    });
  });
});
