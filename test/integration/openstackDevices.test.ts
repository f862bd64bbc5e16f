/**
 * Issue 14, devices: Debian's unmodified `blazar` (python3-blazarclient), `zun` (python3-zunclient)
 * and `openstack appcontainer` against the daemon, with a device backed by a real dockerd (host
 * networking, `--bridge=none`). The admin enrolls the device with our client (Doni has no standard
 * CLI); everything a user does goes through the upstream clients.
 */
import { strict as assert } from 'assert';
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startDaemon, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { startDockerEngines, busyboxRootfs, type DockerEngines, type DockerEngine } from './fixtures/dockerEngines';
import { CloudletClient } from '../../sandbox/client';
import { devicesApi } from '../../sandbox/client/devices';

type Env = NodeJS.ProcessEnv;
interface Run { stdout: string; stderr: string; code: number }

const IMAGE = 'cloudlet-test/busybox:1';
const LABEL_LEASE = 'org.cloudlet.lease';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(cmd: string, args: string[], env: Env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 180_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0 });
    });
  });
}

/** The engine's containers of our leases: state by engine name (zun-<uuid>). */
function engineStates(e: DockerEngine): Record<string, string> {
  const out = e.docker(['ps', '-a', '--filter', `label=${LABEL_LEASE}`, '--format', '{{.Names}} {{.State}}']).trim();
  return Object.fromEntries(out ? out.split('\n').map((l) => l.split(' ')) : []);
}

describe('unmodified blazar and zun clients against devices on a real Docker engine (issue 14)', function () {
  this.timeout(600_000);
  let engines: DockerEngines;
  let engine: DockerEngine;
  let d: TestDaemon;
  let tmp: string;
  let deviceId: string;

  /**
   * A user's environment as an openrc sets it. blazarclient's own shell (unlike `openstack`) has no
   * default auth plugin: its users set OS_AUTH_TYPE, as here.
   */
  const userEnv = (user: keyof typeof TEST_USERS, project: string): Env => ({
    PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_AUTH_TYPE: 'password', OS_USERNAME: user, OS_PASSWORD: TEST_USERS[user],
    OS_PROJECT_NAME: project, OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3',
    OS_INTERFACE: 'public', no_proxy: '127.0.0.0/8', http_proxy: '', https_proxy: '',
  });
  const ok = async (cmd: string, args: string[], env: Env) => {
    const r = await run(cmd, args, env);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  // `blazar lease-create` prints "Created a new lease:" before the JSON.
  const json = (out: string) => JSON.parse(out.slice(out.search(/[[{]/)));
  /** blazarclient's JSON output carries nested objects as JSON text. */
  const nested = (v: unknown) => (typeof v === 'string' ? JSON.parse(v) : v);
  const minutesFromNow = (m: number) => new Date(Date.now() + m * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  // blazarclient 3.5 parses --reservation keys only for physical:host; naming it in an ignored key
  // makes it keep resource_type=device (docs/devices.md).
  const deviceReservation = 'resource_type=device,min=1,max=1,resource_properties=["==","$machine_name","raspberrypi4-64"],hypervisor_properties=physical:host';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-osdevices-'));
    engines = await startDockerEngines(1);
    engine = engines.list[0];
    // The image is on the device already (image_pull_policy ifnotpresent): no registry needed here.
    const tar = execFileSync('tar', ['-C', busyboxRootfs(tmp, 'hello from the device\n'), '-c', '.'], { maxBuffer: 64 << 20 });
    engine.docker(['import', '--change', 'CMD ["/bin/sh"]', '-', IMAGE], tar);
    d = await startDaemon({ ip: '127.0.0.2' });
    const admin = devicesApi(await CloudletClient.login({ authUrl: d.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' }));
    deviceId = (await admin.enrollDevice({ name: 'pi-1', machineName: 'raspberrypi4-64', engineEndpoint: engine.endpoint })).uuid;
  });
  after(async () => {
    await d?.stop();
    await engines?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  let leaseId: string;
  let reservationId: string;

  it('blazar lease-create/list/show/update --prolong-for; a bad request is a one-line error', async () => {
    const alice = userEnv('alice', 'demo');
    const end = minutesFromNow(30);
    const created = json(await ok('blazar', ['lease-create', '-f', 'json', '--end-date', end, '--reservation', deviceReservation, 'blazar-lease'], alice));
    assert.equal(created.name, 'blazar-lease');
    assert.equal(created.status, 'ACTIVE');
    assert.equal(created.end_date, `${end.replace(' ', 'T')}:00.000000`);
    const res = nested(created.reservations);
    assert.equal(res.resource_type, 'device');
    assert.deepEqual(res.allocated_devices, [deviceId]);
    leaseId = created.id;
    reservationId = res.id;

    const listed = json(await ok('blazar', ['lease-list', '-f', 'json'], alice));
    assert.deepEqual(listed.map((l: { id: string; name: string }) => [l.id, l.name]), [[leaseId, 'blazar-lease']]);
    const shown = json(await ok('blazar', ['lease-show', '-f', 'json', 'blazar-lease'], alice));
    assert.equal(shown.id, leaseId);
    assert.match(shown.events, /"event_type": "end_lease"/);

    assert.match(await ok('blazar', ['lease-update', '--prolong-for', '1h', 'blazar-lease'], alice), /Updated lease: blazar-lease/);
    const prolonged = json(await ok('blazar', ['lease-show', '-f', 'json', leaseId], alice));
    assert.equal(Date.parse(prolonged.end_date + 'Z') - Date.parse(created.end_date + 'Z'), 3600_000);

    // Another project sees none of it; a filter the daemon refuses comes back with the reason.
    assert.deepEqual(json(await ok('blazar', ['lease-list', '-f', 'json'], userEnv('bob', 'other'))), []);
    const refused = await run('blazar', ['lease-create', '--end-date', minutesFromNow(60),
      '--reservation', deviceReservation.replace('["=="', '["like"'), 'bad-filter'], alice);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /unknown operator 'like'/);
    assert.doesNotMatch(refused.stderr, /Traceback/);
  });

  it('zun run --hint reservation=... / list / show / logs / exec / stop / start / delete on the reserved device', async () => {
    assert.ok(reservationId, 'the blazar test made the lease');
    const alice = userEnv('alice', 'demo');
    const ran = await ok('zun', ['run', '--name', 'zun-c', '--hint', `reservation=${reservationId}`, '-e', 'WHO=zun',
      IMAGE, 'sh', '-c', 'echo hello $WHO; exec sleep 600'], alice);
    assert.match(ran, /\|\s*host\s*\|\s*pi-1\s*\|/);
    const engineName = `zun-${/\|\s*uuid\s*\|\s*([0-9a-f-]{36})/.exec(ran)![1]}`;
    const status = async (name: string) => JSON.parse(await ok('zun', ['show', '-f', 'json', name], alice)).status as string;
    for (let i = 0; (await status('zun-c')) !== 'Running'; i++) {
      assert.ok(i < 120, 'zun-c never ran');
      await sleep(500);
    }
    assert.match(await ok('zun', ['list'], alice), /\| zun-c\s*\| cloudlet-test\/busybox:1\s*\| Running\s*\|/);
    assert.equal(engineStates(engine)[engineName], 'running');
    assert.match(await ok('zun', ['logs', 'zun-c'], alice), /^hello zun\n/);
    assert.equal(await ok('zun', ['exec', 'zun-c', 'cat', '/www/index.html'], alice), 'hello from the device\n\n');

    assert.match(await ok('zun', ['stop', 'zun-c'], alice), /Request to stop container zun-c has been accepted/);
    assert.equal(await status('zun-c'), 'Stopped');
    assert.equal(engineStates(engine)[engineName], 'exited');
    assert.match(await ok('zun', ['start', 'zun-c'], alice), /Request to start container zun-c has been accepted/);
    assert.equal(await status('zun-c'), 'Running');
    assert.equal(engineStates(engine)[engineName], 'running');

    // bob's project holds no reservation of this device: the name is not even found.
    const bobs = await run('zun', ['show', 'zun-c'], userEnv('bob', 'other'));
    assert.notEqual(bobs.code, 0);
    assert.match(bobs.stderr, /container zun-c not found \(HTTP 404\)/);
    // Zun's rule: a running container is deleted only with --stop or --force; the reason is printed.
    assert.match(await ok('zun', ['delete', 'zun-c'], alice), /Delete for container zun-c failed: container zun-c is Running: stop it first/);
    assert.match(await ok('zun', ['delete', '--stop', 'zun-c'], alice), /Request to delete container zun-c has been accepted/);
    assert.deepEqual(engineStates(engine), {});
    assert.match((await run('zun', ['show', 'zun-c'], alice)).stderr, /container zun-c not found \(HTTP 404\)/);
  });

  it('openstack appcontainer run/show/logs/exec/stop/start/delete --force', async () => {
    const alice = userEnv('alice', 'demo');
    const osJson = async (...args: string[]) => JSON.parse(await ok('openstack', [...args, '-f', 'json'], alice));
    const ran = JSON.parse(await ok('openstack', ['appcontainer', 'run', '-f', 'json', '--name', 'osc-c', '--hint', `reservation=${reservationId}`,
      IMAGE, 'sh', '-c', 'echo hello osc; exec sleep 600'], alice));
    assert.equal(ran.device_name, 'pi-1');
    for (let i = 0; (await osJson('appcontainer', 'show', 'osc-c')).status !== 'Running'; i++) {
      assert.ok(i < 120, 'osc-c never ran');
      await sleep(500);
    }
    assert.match(await ok('openstack', ['appcontainer', 'logs', 'osc-c'], alice), /hello osc/);
    assert.equal(await ok('openstack', ['appcontainer', 'exec', 'osc-c', 'echo', 'two', 'words'], alice), 'two words\n\n');
    await ok('openstack', ['appcontainer', 'stop', 'osc-c'], alice);
    assert.equal((await osJson('appcontainer', 'show', 'osc-c')).status, 'Stopped');
    await ok('openstack', ['appcontainer', 'start', 'osc-c'], alice);
    assert.equal((await osJson('appcontainer', 'show', 'osc-c')).status, 'Running');
    assert.deepEqual((await osJson('appcontainer', 'list')).map((c: { name: string }) => c.name), ['osc-c']);
    await ok('openstack', ['appcontainer', 'delete', '--force', 'osc-c'], alice);
    assert.deepEqual(await osJson('appcontainer', 'list'), []);
    assert.deepEqual(engineStates(engine), {});
  });

  it('blazar lease-delete ends the lease; zun run on its reservation is then refused with the reason', async () => {
    const alice = userEnv('alice', 'demo');
    assert.match(await ok('blazar', ['lease-delete', leaseId], alice), /Deleted lease: /);
    assert.deepEqual(json(await ok('blazar', ['lease-list', '-f', 'json'], alice)), []);
    const refused = await run('zun', ['run', '--hint', `reservation=${reservationId}`, IMAGE, 'true'], alice);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /reservation [0-9a-f-]{36} does not exist/);
  });
});
