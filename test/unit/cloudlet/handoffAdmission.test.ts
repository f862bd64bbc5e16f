/**
 * Issue 11.2 at the unit level: the real handoff receiver (createHandoffService) over a fake
 * SandboxManager whose claimLaunch takes a while, as the base and host checks do. That await is where
 * parallel begins used to slip past the quota check. Sessions must count against max_servers from
 * their begin, creates must count sessions, and a session that ends (or fails its checks at begin,
 * or its preparation after begin answered) gives its place back.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { computeModule } from '../../../sandbox/cloudlet/api/compute';
import { imageModule } from '../../../sandbox/cloudlet/api/image';
import type { ServerLifecycle } from '../../../sandbox/cloudlet/servers/serverLifecycle';
import { createHandoffService } from '../../../sandbox/handoff/handoffService';
import type { SandboxManager } from '../../../sandbox/sandboxes/sandboxManager';
import { CloudletError } from '../../../sandbox/common/errors';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';
import { FAKE_BASE, FakeVmBackend } from './fakeVmBackend';

const RAM = 64 * 4096;
const VM = { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: RAM, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:00:00:01' } };

/** What the receiver asks of a SandboxManager at begin and at a session's end. */
class FakeManager {
  readonly prepared: string[] = [];
  readonly deleted: string[] = [];
  /** The host checks fail: the begin is refused. */
  failPrepare = false;
  /** The files fail after begin answered (the manager discards the sandbox itself). */
  failFiles = false;
  private n = 0;
  constructor(private readonly dir: string) {
    fs.writeFileSync(path.join(dir, 'base.ram'), Buffer.alloc(RAM));
    fs.writeFileSync(path.join(dir, 'base.disk'), Buffer.alloc(RAM));
  }
  readonly bases = {
    get: (id: string) => {
      if (id !== FAKE_BASE) throw new CloudletError('NotFound', `no base ${id}`);
      return { manifest: { vm: VM, files: {} }, ram: path.join(this.dir, 'base.ram'), disk: path.join(this.dir, 'base.disk') };
    },
  };
  async claimLaunch(): Promise<{ id: string; prepared: Promise<{ id: string; files: { ram: string; disk: string }; ramReady: Promise<void> }> }> {
    await new Promise((r) => setTimeout(r, 50)); // base and QEMU checked: the await gap of a real begin
    if (this.failPrepare) throw new CloudletError('MissingTool', 'qemu-system-x86_64 is not installed');
    const id = `prep-${++this.n}`;
    this.prepared.push(id);
    const failFiles = this.failFiles;
    const prepared = (async () => {
      await new Promise((r) => setTimeout(r, 20)); // the files, after begin answered
      if (failFiles) { this.deleted.push(id); throw new CloudletError('Unavailable', 'no space left on the device while copying the base RAM for the VM'); }
      const ram = path.join(this.dir, `${id}.ram`);
      fs.writeFileSync(ram, Buffer.alloc(RAM));
      return { id, files: { ram, disk: path.join(this.dir, `${id}.qcow2`) }, ramReady: Promise.resolve() };
    })();
    return { id, prepared };
  }
  async startPrepared(): Promise<void> {}
  async delete(id: string): Promise<void> { this.deleted.push(id); }
}

describe('handoff sessions count against max_servers (issue 11.2): receiver over a fake SandboxManager', () => {
  let d: UnitDaemon;
  let dir: string;
  let manager: FakeManager;
  let lifecycle: ServerLifecycle;
  const backend = new FakeVmBackend();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-handoff-admission-'));
    manager = new FakeManager(dir);
    const withManager = Object.assign(backend, { manager: manager as unknown as SandboxManager });
    d = await startUnitDaemon([
      computeModule({ backend: withManager, maxServers: 3, overlayMaxBytes: 1 << 20, handoff: (ctx, l) => { lifecycle = l; return createHandoffService(ctx, l, withManager); } }),
      imageModule({ maxUploadBytes: 1 << 20 }),
    ]);
  });
  after(async () => { await d?.close(); fs.rmSync(dir, { recursive: true, force: true }); });

  const begin = (i: number) => d.inject('alice', { method: 'POST', url: '/compute/v2.1/os-cloudlet-handoff',
    payload: { handoff: { name: `in-${i}`, base_id: FAKE_BASE, ports: [80], vm_config: VM } } });
  const create = async (name: string) => {
    const images = (await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images as Array<{ id: string; cloudlet_type?: string }>;
    const imageRef = images.find((i) => i.cloudlet_type === 'cloudlet_base_disk')!.id;
    return d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers', payload: { server: { name, imageRef } } });
  };

  it('20 parallel begins with 2 free places open 2 sessions; creates are refused while they are pending; ended sessions give their places back', async () => {
    const first = await create('running');
    assert.equal(first.statusCode, 202, first.body);
    await d.daemon.jobs.wait(first.json().server['OS-EXT-CLOUDLET:job_id']);
    const res = await Promise.all(Array.from({ length: 20 }, (_, i) => begin(i)));
    const opened = res.filter((r) => r.statusCode === 201).map((r) => r.json().session.id as string);
    for (const r of res.filter((x) => x.statusCode !== 201)) {
      assert.equal(r.statusCode, 403, r.body);
      assert.match(r.json().forbidden.message, /Quota exceeded for instances: this cloudlet runs at most 3 servers/);
    }
    assert.equal(opened.length, 2, `${opened.length} sessions on a cloudlet with 2 free places`);
    assert.equal(manager.prepared.length, 2, 'no VM was prepared for a refused begin');
    assert.equal((await create('while-pending')).statusCode, 403);
    for (const sid of opened) assert.equal((await d.inject('alice', { method: 'DELETE', url: `/compute/v2.1/os-cloudlet-handoff/${sid}` })).statusCode, 204);
    assert.deepEqual(manager.deleted.sort(), [...manager.prepared].sort(), 'each ended session removed its prepared VM');
    assert.equal(lifecycle.admission.inUse(), 1);
    assert.equal((await create('after-1')).statusCode, 202);
    assert.equal((await create('after-2')).statusCode, 202);
    assert.equal((await create('over')).statusCode, 403);
  });

  it('a begin whose VM cannot be prepared gives its place back: refused at begin (host checks), or at the next round (files, after begin answered)', async () => {
    const before = lifecycle.admission.inUse();
    for (const s of (await d.inject('alice', { method: 'GET', url: '/compute/v2.1/servers' })).json().servers as Array<{ id: string }>) {
      await d.inject('alice', { method: 'DELETE', url: `/compute/v2.1/servers/${s.id}` });
    }
    assert.ok(lifecycle.admission.inUse() < before);
    manager.failPrepare = true;
    const res = await Promise.all([begin(100), begin(101), begin(102)]);
    manager.failPrepare = false;
    assert.deepEqual(res.map((r) => r.statusCode), [500, 500, 500], res.map((r) => r.body).join('\n'));
    assert.match(res[0].json().computeFault?.message ?? res[0].body, /qemu-system-x86_64 is not installed/);
    assert.equal(lifecycle.admission.inUse(), 0, 'no place is held by a begin that failed');
    const again = await Promise.all([begin(104), begin(105), begin(106)]);
    assert.deepEqual(again.map((r) => r.statusCode), [201, 201, 201], 'all three places are free again');
    for (const r of again) await d.inject('alice', { method: 'DELETE', url: `/compute/v2.1/os-cloudlet-handoff/${r.json().session.id}` });
    assert.equal(lifecycle.admission.inUse(), 0);
    // The files fail after the answer: begin said 201, the place is given back once that failure is
    // known (no round needed), and the next round gets the failure with its code, not a session gone.
    manager.failFiles = true;
    const late = await begin(107);
    manager.failFiles = false;
    assert.equal(late.statusCode, 201, late.body);
    const sid = late.json().session.id as string;
    for (let i = 0; i < 50 && lifecycle.admission.inUse() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lifecycle.admission.inUse(), 0, 'a session whose preparation failed holds no place');
    const round = await d.inject('alice', { method: 'PUT', url: `/compute/v2.1/os-cloudlet-handoff/${sid}/rounds/0`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(8) });
    assert.equal(round.json().cloudlet_error?.code, 'Unavailable', round.body);
    assert.match(round.body, /preparing the VM at this cloudlet failed: no space left on the device/);
    assert.equal((await d.inject('alice', { method: 'PUT', url: `/compute/v2.1/os-cloudlet-handoff/${sid}/heartbeat` })).statusCode, 404, 'the session ended with that round');
  });
});
