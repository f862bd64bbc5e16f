/**
 * The server state machine (ServerLifecycle) through the whole request path of a real daemon core
 * (fastify's inject, SQLite, Keystone auth, jobs) over a fake VmBackend: create within the
 * admission rule, BUILD -> ACTIVE / ERROR, the power actions and their 409s, delete while
 * building, handoff slots counted by max_servers, and what a restart makes of each row.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import Database from '../../../sandbox/common/sqlite';
import { computeModule } from '../../../sandbox/cloudlet/api/compute';
import { imageModule } from '../../../sandbox/cloudlet/api/image';
import type { ServerLifecycle } from '../../../sandbox/cloudlet/servers/serverLifecycle';
import type { HandoffService } from '../../../sandbox/cloudlet/servers/serverHandoff';
import { CloudletError } from '../../../sandbox/common/errors';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';
import { FAKE_BASE, FakeVmBackend } from './fakeVmBackend';

const noHandoff: HandoffService = {
  start() { throw new CloudletError('BadInput', 'no handoff in this test', { status: 501 }); },
  routes() {}, async stop() {},
};

function modules(backend: FakeVmBackend, maxServers: number, onLifecycle?: (l: ServerLifecycle) => void) {
  return [
    computeModule({ backend, maxServers, overlayMaxBytes: 1 << 20, handoff: (_ctx, l) => { onLifecycle?.(l); return noHandoff; } }),
    imageModule({ maxUploadBytes: 1 << 20 }),
  ];
}

/** Requests of one user against one unit daemon. */
function api(d: UnitDaemon) {
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) => d.inject('alice', { method, url: `/compute/v2.1${url}`, ...(payload ? { payload } : {}) });
  const baseImage = async () => {
    const images = (await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images as Array<{ id: string; base_sha256_uuid?: string; cloudlet_type?: string }>;
    const img = images.find((i) => i.base_sha256_uuid === FAKE_BASE && i.cloudlet_type === 'cloudlet_base_disk');
    assert.ok(img, 'the fake base is advertised as a base image');
    return img.id;
  };
  return {
    call,
    create: async (name: string) => call('POST', '/servers', { server: { name, imageRef: await baseImage(), metadata: { ports: '80' } } }),
    show: async (id: string) => (await call('GET', `/servers/${id}`)).json().server,
    action: (id: string, body: unknown) => call('POST', `/servers/${id}/action`, body),
    wait: (jobId: string) => d.daemon.jobs.wait(jobId),
  };
}

describe('ServerLifecycle: the compute API state machine over a fake VmBackend', () => {
  const backend = new FakeVmBackend();
  let lifecycle: ServerLifecycle;
  let d: UnitDaemon;
  let a: ReturnType<typeof api>;
  before(async () => {
    d = await startUnitDaemon(modules(backend, 3, (l) => { lifecycle = l; }));
    a = api(d);
  });
  afterEach(async () => {
    backend.holdResume = false; backend.ignoreCancel = false; backend.failResume = undefined; backend.release();
    for (const s of (await a.call('GET', '/servers')).json().servers as Array<{ id: string }>) assert.equal((await a.call('DELETE', `/servers/${s.id}`)).statusCode, 204);
  });
  after(async () => { await d.close(); });

  it('a base resume: 202 with its job and Location, BUILD while the VM starts, then ACTIVE with the forwarded ports', async () => {
    backend.holdResume = true;
    const res = await a.create('one');
    assert.equal(res.statusCode, 202, res.body);
    const created = res.json().server;
    assert.match(res.headers.location as string, new RegExp(`/compute/v2.1/servers/${created.id}$`));
    const jobId = created['OS-EXT-CLOUDLET:job_id'];
    assert.ok(jobId);
    for (let i = 0; i < 100 && backend.heldCount() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    let s = await a.show(created.id);
    assert.deepEqual([s.status, s['OS-EXT-STS:vm_state'], s['OS-EXT-STS:task_state'], s['OS-SRV-USG:launched_at']], ['BUILD', 'building', 'spawning', null]);
    backend.release();
    assert.equal((await a.wait(jobId))?.status, 'DONE');
    s = await a.show(created.id);
    assert.deepEqual([s.status, s['OS-EXT-STS:vm_state'], s['OS-EXT-STS:power_state'], s['OS-EXT-STS:task_state'], s.progress], ['ACTIVE', 'active', 1, null, 100]);
    assert.deepEqual(s['OS-EXT-CLOUDLET:ports'], { 80: '127.0.0.1:40080' });
    assert.equal(s['OS-EXT-CLOUDLET:base_id'], FAKE_BASE);
    assert.ok(s['OS-SRV-USG:launched_at']);
  });

  it('the VM layer failing: ERROR, with a fault that keeps the error\'s code and hint', async () => {
    backend.failResume = new CloudletError('MissingBase', 'the base went away', { hint: 'import it again' });
    const created = (await a.create('broken')).json().server;
    assert.equal((await a.wait(created['OS-EXT-CLOUDLET:job_id']))?.status, 'ERROR');
    const s = await a.show(created.id);
    assert.equal(s.status, 'ERROR');
    assert.equal(s.fault.code, 400);
    assert.deepEqual(s.fault.cloudlet_error, { code: 'MissingBase', hint: 'import it again' });
    assert.match(s.fault.message, /the base went away/);
  });

  it('pause, unpause and os-stop follow the state machine; an action in the wrong state is Nova\'s 409 and leaves the VM alone', async () => {
    const created = (await a.create('power')).json().server;
    await a.wait(created['OS-EXT-CLOUDLET:job_id']);
    const calls = backend.calls.length;
    const unpause = await a.action(created.id, { unpause: null });
    assert.equal(unpause.statusCode, 409);
    assert.match(unpause.json().conflictingRequest.message, /Cannot 'unpause' instance .* while it is in vm_state active/);
    assert.equal(backend.calls.length, calls, 'the VM was not touched');
    assert.equal((await a.action(created.id, { pause: null })).statusCode, 202);
    assert.deepEqual([(await a.show(created.id)).status, (await a.show(created.id))['OS-EXT-STS:power_state']], ['PAUSED', 3]);
    assert.equal((await a.action(created.id, { pause: null })).statusCode, 409);
    assert.equal((await a.action(created.id, { unpause: {} })).statusCode, 202);
    assert.equal((await a.show(created.id)).status, 'ACTIVE');
    assert.equal((await a.action(created.id, { 'os-stop': null })).statusCode, 202);
    assert.equal((await a.show(created.id)).status, 'SHUTOFF');
    assert.match((await a.action(created.id, { pause: null })).json().conflictingRequest.message, /vm_state stopped/);
    assert.deepEqual(backend.calls.slice(calls).map((c) => c.split(' ')[0]), ['pause', 'unpause', 'stop']);
  });

  it('action bodies: exactly one known key, else 400 before anything changes', async () => {
    const created = (await a.create('bodies')).json().server;
    await a.wait(created['OS-EXT-CLOUDLET:job_id']);
    for (const body of [{}, { pause: null, unpause: null }, { reboot: { type: 'GENTLE' } }, { evacuate: {} }, { 'cloudlet-handoff': { handoff_url: 'ftp://x', dest_token: 't' } },
      { 'cloudlet-overlay-finish': { 'overlay-name': ['x'] } }]) {
      const res = await a.action(created.id, body);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
    }
    assert.equal((await a.show(created.id)).status, 'ACTIVE');
  });

  it('cloudlet-overlay-finish: an overlay image made by a job, the server keeps running with no task left', async () => {
    const created = (await a.create('snap')).json().server;
    await a.wait(created['OS-EXT-CLOUDLET:job_id']);
    const res = await a.action(created.id, { 'cloudlet-overlay-finish': { 'overlay-name': 'snap-overlay' } });
    assert.equal(res.statusCode, 202, res.body);
    assert.equal((await a.wait(res.json().job_id))?.status, 'DONE');
    const img = (await d.inject('alice', { method: 'GET', url: `/image/v2/images/${res.json()['overlay-id']}` })).json();
    assert.deepEqual([img.name, img.status, img.cloudlet_type], ['snap-overlay', 'active', 'cloudlet_overlay']);
    const s = await a.show(created.id);
    assert.deepEqual([s.status, s['OS-EXT-STS:task_state']], ['ACTIVE', null]);
  });

  it('deleted while building: the job is cancelled, the server is gone at once, no VM is left', async () => {
    backend.holdResume = true;
    const created = (await a.create('gone')).json().server;
    for (let i = 0; i < 100 && backend.heldCount() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await a.call('DELETE', `/servers/${created.id}`)).statusCode, 204);
    assert.equal((await a.call('GET', `/servers/${created.id}`)).statusCode, 404);
    assert.equal((await a.wait(created['OS-EXT-CLOUDLET:job_id']))?.status, 'CANCELLED');
    assert.equal([...backend.vms.values()].filter((v) => v.state === 'running').length, 0);
  });

  it('deleted while building, the VM layer finishing anyway: the VM it made is removed', async () => {
    backend.holdResume = true;
    backend.ignoreCancel = true;
    const created = (await a.create('late')).json().server;
    for (let i = 0; i < 100 && backend.heldCount() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await a.call('DELETE', `/servers/${created.id}`)).statusCode, 204);
    backend.release();
    await a.wait(created['OS-EXT-CLOUDLET:job_id']);
    for (let i = 0; i < 100 && backend.vms.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(backend.vms.size, 0, `VMs left: ${[...backend.vms.keys()].join(', ')}`);
  });

  it('max_servers: of parallel creates, exactly as many as fit are accepted, the rest get Nova\'s 403', async () => {
    const res = await Promise.all(Array.from({ length: 6 }, (_, i) => a.create(`q-${i}`)));
    assert.deepEqual(res.map((r) => r.statusCode).sort(), [202, 202, 202, 403, 403, 403], res.map((r) => r.body).join("\n"));
    for (const r of res.filter((x) => x.statusCode === 403)) assert.match(r.json().forbidden.message, /Quota exceeded for instances: this cloudlet runs at most 3 servers/);
    // A server in ERROR holds no VM: it does not count.
    const ok = res.filter((x) => x.statusCode === 202).map((x) => x.json().server);
    for (const s of ok) await a.wait(s['OS-EXT-CLOUDLET:job_id']);
    assert.equal((await a.call('DELETE', `/servers/${ok[0].id}`)).statusCode, 204);
    backend.failResume = new CloudletError('Internal', 'broken');
    const failed = (await a.create('fails')).json().server;
    await a.wait(failed['OS-EXT-CLOUDLET:job_id']);
    backend.failResume = undefined;
    assert.equal((await a.create('fits')).statusCode, 202);
  });

  it('VMs started before their server row (handoff sessions) count: creates beyond the cap are refused while they are held (issue 11.2)', async () => {
    const first = (await a.create('with-sessions')).json().server;
    await a.wait(first['OS-EXT-CLOUDLET:job_id']);
    const slots = [lifecycle.admission.reserve(), lifecycle.admission.reserve()];
    assert.throws(() => lifecycle.admission.reserve(), /Quota exceeded/);
    const refused = await a.create('over');
    assert.equal(refused.statusCode, 403, refused.body);
    // A session that ends gives its place back; one whose VM arrives turns its place into the server row.
    slots[0].release();
    slots[0].release();
    assert.equal(lifecycle.admission.inUse(), 2);
    const arrived = lifecycle.arrivedByHandoff(slots[1], { name: 'arrived', projectId: (await a.show(first.id)).tenant_id, userId: 'u', flavorId: '1', baseId: FAKE_BASE, metadata: {}, vmId: 'vm-x', ports: {} });
    assert.equal(lifecycle.admission.inUse(), 2, 'the arrived server takes the slot\'s place, not one more');
    assert.equal((await a.show(arrived.id)).status, 'ACTIVE');
    assert.equal((await a.create('fits')).statusCode, 202);
    assert.equal((await a.create('over-again')).statusCode, 403);
  });
  it('os-start passes the admission rule: stopping servers and creating others cannot start more than max_servers VMs', async () => {
    const first = await Promise.all(['s-0', 's-1', 's-2'].map(async (n) => (await a.create(n)).json().server));
    for (const s of first) await a.wait(s['OS-EXT-CLOUDLET:job_id']);
    for (const s of first) assert.equal((await a.action(s.id, { 'os-stop': null })).statusCode, 202);
    const more = await Promise.all(['m-0', 'm-1', 'm-2'].map(async (n) => (await a.create(n)).json().server));
    for (const s of more) await a.wait(s['OS-EXT-CLOUDLET:job_id']);
    const start = await a.action(first[0].id, { 'os-start': null });
    assert.equal(start.statusCode, 403, start.body);
    assert.match(start.json().forbidden.message, /Quota exceeded for instances/);
    assert.equal((await a.show(first[0].id)).status, 'SHUTOFF');
    assert.equal((await a.call('DELETE', `/servers/${more[0].id}`)).statusCode, 204);
    assert.equal((await a.action(first[0].id, { 'os-start': null })).statusCode, 202);
    const s = await a.show(first[0].id);
    assert.deepEqual([s.status, s['OS-EXT-STS:task_state']], ['ACTIVE', null]);
  });

  it('handoff_* metadata is the daemon\'s: refused at create and in metadata writes, kept by a replace', async () => {
    const refused = await a.call('POST', '/servers', { server: { name: 'fake-arrival', imageRef: 'x', metadata: { handoff_session: 'abc' } } });
    assert.equal(refused.statusCode, 403, refused.body);
    const created = (await a.create('meta')).json().server;
    await a.wait(created['OS-EXT-CLOUDLET:job_id']);
    const write = await a.call('POST', `/servers/${created.id}/metadata`, { metadata: { handoff_session: 'abc' } });
    assert.equal(write.statusCode, 403, write.body);
    assert.match(write.body, /handoff_\* keys are read-only/);
    assert.equal((await a.call('GET', `/servers/${created.id}/metadata/constructor`)).statusCode, 404);
  });
});

describe('ServerLifecycle: reconcile after a restart (fake VmBackend)', () => {
  it('a cut build is ERROR and its VM removed, a cut operation is cleared, an ended VM is ERROR, an orphan VM goes', async () => {
    const before = new FakeVmBackend('vm');
    const d1 = await startUnitDaemon(modules(before, 8));
    const a1 = api(d1);
    const ids: Record<string, string> = {};
    for (const name of ['building', 'snapshotting', 'ended', 'migrating', 'deleted']) {
      const s = (await a1.create(name)).json().server;
      await a1.wait(s['OS-EXT-CLOUDLET:job_id']);
      ids[name] = s.id;
    }
    assert.equal((await a1.call('DELETE', `/servers/${ids.deleted}`)).statusCode, 204);
    await d1.daemon.close();
    // What a crash leaves: rows in the middle of something, VMs that ran on (or not).
    const db = new Database(path.join(d1.dataDir, 'cloudlet.db'));
    const vmOf = (id: string) => (db.prepare('SELECT vm_id FROM servers WHERE id = ?').get(id) as { vm_id: string }).vm_id;
    const set = (id: string, status: string, task: string | null) => db.prepare('UPDATE servers SET status = ?, task_state = ? WHERE id = ?').run(status, task, id);
    set(ids.building, 'BUILD', 'spawning');
    set(ids.snapshotting, 'ACTIVE', 'image_snapshot');
    set(ids.migrating, 'ACTIVE', 'migrating');
    const vm = Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, vmOf(id)]));
    db.close();

    const after = new FakeVmBackend('new');
    after.adoptable = [
      { id: vm.building, state: 'running', ports: {}, baseId: FAKE_BASE },
      { id: vm.snapshotting, state: 'paused', ports: { 80: '127.0.0.1:1' }, baseId: FAKE_BASE },
      { id: vm.migrating, state: 'paused', ports: {}, baseId: FAKE_BASE },
      { id: vm.deleted, state: 'running', ports: {}, baseId: FAKE_BASE },
    ];
    const d2 = await startUnitDaemon(modules(after, 8), {}, { dataDir: d1.dataDir });
    try {
      const a2 = api(d2);
      const building = await a2.show(ids.building);
      assert.equal(building.status, 'ERROR');
      assert.match(building.fault.message, /interrupted: the cloudlet daemon stopped while this server was being built/);
      const snap = await a2.show(ids.snapshotting);
      assert.deepEqual([snap.status, snap['OS-EXT-STS:task_state'], snap['OS-EXT-CLOUDLET:ports']], ['PAUSED', null, { 80: '127.0.0.1:1' }]);
      const ended = await a2.show(ids.ended);
      assert.equal(ended.status, 'ERROR');
      assert.match(ended.fault.message, /the VM process ended while the cloudlet daemon was down/);
      // Without a handoff service to ask, a handoff cut after the pause resumes the VM here.
      const mig = await a2.show(ids.migrating);
      assert.deepEqual([mig.status, mig['OS-EXT-STS:task_state']], ['ACTIVE', null]);
      assert.ok(after.calls.includes(`unpause ${vm.migrating}`));
      assert.ok(after.calls.includes(`delete ${vm.building}`), 'the half-built VM is removed');
      assert.ok(after.calls.includes(`delete ${vm.deleted}`), 'the VM of a deleted server is removed');
      assert.ok(!after.calls.includes(`delete ${vm.snapshotting}`) && !after.calls.includes(`delete ${vm.migrating}`), after.calls.join(', '));
    } finally {
      await d2.close();
    }
  });
});
