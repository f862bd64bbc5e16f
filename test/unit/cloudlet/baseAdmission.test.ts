/**
 * POST /sandbox/v1/bases (and /builds) boot a VM, so they pass the same max_servers rule as server
 * creates and handoffs (servers/admission.ts): refused at the limit before a job starts, with the code in the
 * body; its place held for the whole job and given back however the job ends. A real daemon core
 * over a fake VmBackend (no QEMU): the base job here fails fast on a file that is no disk image.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { computeModule, type ComputeModule } from '../../../sandbox/cloudlet/api/compute';
import { imageModule } from '../../../sandbox/cloudlet/api/image';
import { devSandboxModule } from '../../../sandbox/cloudlet/api/devsandbox';
import { BaseStore } from '../../../sandbox/base/store';
import type { SandboxManager } from '../../../sandbox/sandboxes/sandboxManager';
import { CloudletError } from '../../../sandbox/common/errors';
import { projectRoot } from '../../../sandbox/common/paths';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';
import { FAKE_BASE, FakeVmBackend } from './fakeVmBackend';

describe('base creation and builds count against max_servers', () => {
  const backend = new FakeVmBackend();
  let compute: ComputeModule;
  let d: UnitDaemon;
  let store: string;

  before(async () => {
    compute = computeModule({ backend, maxServers: 1, overlayMaxBytes: 1 << 20,
      handoff: () => ({ start() { throw new CloudletError('BadInput', 'no handoff here'); }, routes() {}, async stop() {} }) });
    store = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-bases-'));
    const manager = { bases: new BaseStore(store) } as unknown as SandboxManager;
    d = await startUnitDaemon([compute, imageModule({ maxUploadBytes: 1 << 20 }), devSandboxModule({ manager, admission: () => compute.admission })]);
  });
  after(async () => { await d?.close(); fs.rmSync(store, { recursive: true, force: true }); });

  const createBase = (base: Record<string, unknown>) => d.inject('admin', { method: 'POST', url: '/sandbox/v1/bases', payload: { base } });
  const baseJobs = async () => ((await d.inject('admin', { method: 'GET', url: '/cloudlet/v1/jobs' })).json().jobs as { kind: string }[]).filter((j) => j.kind === 'base-create');

  it('at the limit: 403 with code Forbidden and the reason, no job; a place frees and it is accepted, held until its job ends', async () => {
    const images = (await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images as { id: string; base_sha256_uuid?: string }[];
    const imageRef = images.find((i) => i.base_sha256_uuid === FAKE_BASE)!.id;
    const server = await d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers', payload: { server: { name: 'one', imageRef } } });
    assert.equal(server.statusCode, 202, server.body);
    await d.daemon.jobs.wait(server.json().server['OS-EXT-CLOUDLET:job_id']);
    assert.equal(compute.admission.inUse(), 1);

    const refused = await createBase({ name: 'full', source: 'test-guest' });
    assert.equal(refused.statusCode, 403, refused.body);
    assert.equal(refused.json().error.code, 403);
    assert.match(refused.json().error.message, /cannot create base full now: this cloudlet already runs its limit of 1 VMs \(max_servers/);
    assert.equal(refused.json().cloudlet_error.code, 'Forbidden');
    assert.match(refused.json().cloudlet_error.hint, /stop or delete a server/);
    assert.deepEqual(await baseJobs(), [], 'no job was started');
    // A build runs a sandbox VM too: the same rule.
    const build = await d.inject('admin', { method: 'POST', url: '/sandbox/v1/builds', payload: { build: { folder: path.join(projectRoot(), 'test/fixtures/sample-backend') } } });
    assert.equal(build.statusCode, 403, build.body);
    assert.match(build.json().error.message, /cannot build sample-backend now: .* limit of 1 VMs/);
    assert.equal(build.json().cloudlet_error.code, 'Forbidden');

    assert.equal((await d.inject('alice', { method: 'DELETE', url: `/compute/v2.1/servers/${server.json().server.id}` })).statusCode, 204);
    assert.equal(compute.admission.inUse(), 0);
    const notADisk = path.join(d.dataDir, 'notes.img');
    fs.writeFileSync(notADisk, 'not a disk\n'.repeat(100));
    const accepted = await createBase({ name: 'notes', source: 'image', image: notADisk });
    assert.equal(accepted.statusCode, 202, accepted.body);
    // Answered only after the place was taken: a server now finds the cloudlet full.
    assert.equal(compute.admission.inUse(), 1);
    const end = await d.daemon.jobs.wait(accepted.json().job_id);
    assert.equal(end?.status, 'ERROR');
    assert.equal(compute.admission.inUse(), 0, 'a failed base creation gives its place back');
  });

  it('a refused body takes no place', async () => {
    const bad = await createBase({ name: 'x', source: 'floppy' });
    assert.equal(bad.statusCode, 400);
    assert.equal(compute.admission.inUse(), 0);
  });
});
