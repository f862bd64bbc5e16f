/**
 * Load and isolation with real VMs on one daemon: 8 concurrent syntheses of one overlay all reach
 * ACTIVE (or end with a clear ERROR/403 when over capacity), each VM answering on its own forwarded
 * port with its own fresh counter; a 9th request over capacity gets 403. Then project B cannot
 * see, show, delete or act on a real server of project A. max_servers holds under parallel creates,
 * and handoff sessions (each a waiting QEMU) count against it: 20 parallel begins with 2 free
 * slots open 2 sessions, and creates are refused while they are pending (issue 11.2).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { startDaemon, testConfig, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { sampleOverlay, uploadOverlay, counter, httpGet } from './fixtures/sampleOverlay';
import { CloudletClient, ApiError, type Server } from '../../sandbox/client';
import { TEST_BASE_RAM_MIB, ensureTestBase, qemuPidsUnder } from './fixtures/testBase';

const N = 8;

describe('cloudlet daemon: load and isolation with real VMs', function () {
  this.timeout(1_800_000);
  let d: TestDaemon;
  let alice: CloudletClient, bob: CloudletClient;
  let overlayUrl: string;
  const active: Server[] = [];

  before(async () => {
    const overlay = await sampleOverlay();
    d = await startDaemon({ ip: '127.0.0.2', withTestBase: true });
    alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    bob = await CloudletClient.login({ authUrl: d.authUrl, username: 'bob', password: TEST_USERS.bob, project: 'other' });
    overlayUrl = await uploadOverlay(alice, overlay);
  });
  after(async () => { await d?.stop(); });

  it(`${N} concurrent syntheses of one overlay: each ACTIVE VM answers with its own counter, over capacity is a clear 403/ERROR`, async () => {
    const created = await Promise.allSettled(Array.from({ length: N }, (_, i) => alice.createServer({ name: `load-${i}`, overlayUrl })));
    const accepted: Array<{ id: string; jobId?: string }> = [];
    for (const c of created) {
      if (c.status === 'fulfilled') accepted.push(c.value);
      else {
        assert.ok(c.reason instanceof ApiError && c.reason.httpStatus === 403, String(c.reason));
        assert.match(c.reason.message, /Quota exceeded for instances/);
      }
    }
    assert.ok(accepted.length > 0, 'no request accepted');
    const ends = await Promise.all(accepted.map((c) => alice.watchJob(c.jobId!)));
    for (const [i, e] of ends.entries()) {
      const s = await alice.getServer(accepted[i].id);
      if (e.status === 'DONE') { assert.equal(s.status, 'ACTIVE'); active.push(s); } else {
        assert.equal(s.status, 'ERROR');
        assert.ok(s.fault?.message && s.fault.message.length > 10, `an ERROR says why: ${JSON.stringify(s.fault)}`);
      }
    }
    assert.equal(active.length, accepted.length, `all accepted syntheses reach ACTIVE on a cloudlet of ${N} servers: ${ends.map((e) => e.error).filter(Boolean).join('; ')}`);
    const ports = new Set(active.map((s) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80']));
    assert.equal(ports.size, active.length, 'every VM has its own forwarded port');
    for (const s of active) {
      const hp = (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80'];
      assert.match((await httpGet(hp, '/index.html')).body, /sample back-end/);
      assert.equal(await counter(hp), 42, `server ${s.name}: its own counter, from the overlay's state`);
    }
    if (active.length === N) {
      await assert.rejects(alice.createServer({ name: 'one-too-many', overlayUrl }), (e: ApiError) => e.httpStatus === 403 && /Quota exceeded/.test(e.message));
    }
    const tmp = path.join(d.dataDir, 'tmp');
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => !f.startsWith('.')), [], 'no work files left in tmp');
  });

  it('project B cannot see, show, delete or act on a real server of project A', async () => {
    const s = active[0] ?? await (async () => {
      const c = await alice.createServer({ name: 'iso', overlayUrl });
      assert.equal((await alice.watchJob(c.jobId!)).status, 'DONE');
      return alice.getServer(c.id);
    })();
    assert.ok(!(await bob.listServers()).some((x) => x.id === s.id), 'not in B\'s list');
    const raw = await fetch(`${bob.endpoint('compute')}/servers?all_tenants=1`, { headers: { 'x-auth-token': bob.token } });
    assert.ok(!((await raw.json()) as { servers: Server[] }).servers.some((x) => x.id === s.id), 'all_tenants is for admins only');
    const is404 = (e: ApiError) => e.httpStatus === 404;
    await assert.rejects(bob.getServer(s.id), is404);
    await assert.rejects(bob.call('compute', 'GET', `/servers/${s.id}/metadata`), is404);
    await assert.rejects(bob.pauseServer(s.id), is404);
    await assert.rejects(bob.stopServer(s.id), is404);
    await assert.rejects(bob.finishOverlay(s.id, 'steal'), is404);
    await assert.rejects(bob.handoff(s.id, { handoffUrl: bob.endpoint('compute'), destToken: bob.token }), is404);
    await assert.rejects(bob.deleteServer(s.id), is404);
    const after = await alice.getServer(s.id);
    assert.equal(after.status, 'ACTIVE');
    assert.equal(await counter((after['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80']), 43, 'untouched, still running');
    for (const x of await alice.listServers()) await alice.deleteServer(x.id);
  });
});

describe('cloudlet daemon: max_servers under concurrent creates', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  after(async () => { await d?.stop(); });

  it('creates that all pass the first quota check while their overlays open: no more than max_servers are accepted', async () => {
    const overlay = await sampleOverlay();
    d = await startDaemon({ ip: '127.0.0.2', withTestBase: true, config: testConfig({ max_servers: 2 }) });
    const alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const overlayUrl = await uploadOverlay(alice, overlay);
    const created = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => alice.createServer({ name: `q-${i}`, overlayUrl })));
    const accepted = created.filter((c) => c.status === 'fulfilled');
    for (const c of created) {
      if (c.status === 'rejected') assert.ok(c.reason instanceof ApiError && c.reason.httpStatus === 403 && /Quota exceeded/.test(c.reason.message), String(c.reason));
    }
    assert.equal(accepted.length, 2, `accepted ${accepted.length} creates on a cloudlet of 2 servers`);
    for (const x of await alice.listServers()) await alice.deleteServer(x.id);
  });

  it('20 parallel handoff begins with 2 free slots open at most 2 sessions; while they are pending, creates are refused (issue 11.2)', async () => {
    const overlay = await sampleOverlay();
    d ??= await startDaemon({ ip: '127.0.0.2', withTestBase: true, config: testConfig({ max_servers: 2 }) });
    const alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    for (const x of await alice.listServers()) await alice.deleteServer(x.id);
    const overlayUrl = await uploadOverlay(alice, overlay, 'sessions');
    const { baseId } = await ensureTestBase();
    const handoffUrl = `${alice.endpoint('compute')}/os-cloudlet-handoff`;
    const headers = { 'x-auth-token': alice.token, 'content-type': 'application/json' };
    const begins = await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(handoffUrl, { method: 'POST', headers, body: JSON.stringify({ handoff: {
      name: `in-${i}`, base_id: baseId, ports: [80],
      vm_config: { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: TEST_BASE_RAM_MIB << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56' } },
    } }) }).then(async (r) => ({ status: r.status, body: await r.json() as any }))));
    const sessions = begins.filter((b) => b.status === 201).map((b) => b.body.session.id as string);
    try {
      for (const b of begins.filter((x) => x.status !== 201)) {
        assert.equal(b.status, 403, JSON.stringify(b.body));
        assert.match(b.body.forbidden.message, /Quota exceeded for instances/);
      }
      assert.equal(sessions.length, 2, `${sessions.length} sessions opened on a cloudlet of 2 servers`);
      // Each pending session holds a VM (its QEMU waits for the rounds): server creates are refused meanwhile.
      await assert.rejects(alice.createServer({ name: 'while-pending', overlayUrl }), (e: ApiError) => e.httpStatus === 403 && /Quota exceeded/.test(e.message));
      assert.ok(qemuPidsUnder(d.dataDir).length <= 2, `QEMUs: ${qemuPidsUnder(d.dataDir).length}`);
    } finally {
      for (const sid of sessions) {
        const del = await fetch(`${handoffUrl}/${sid}`, { method: 'DELETE', headers: { 'x-auth-token': alice.token } });
        assert.equal(del.status, 204);
      }
    }
    // The sessions gave their places back.
    const c = await alice.createServer({ name: 'after-sessions', overlayUrl });
    assert.equal((await alice.watchJob(c.jobId!)).status, 'DONE');
    await alice.deleteServer(c.id);
    assert.deepEqual(qemuPidsUnder(d.dataDir), []);
  });
});
