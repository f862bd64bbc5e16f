/**
 * Every VM a daemon starts passes one max_servers rule (servers/admission.ts), also the ones that
 * are not servers: a build's sandbox (POST /sandbox/v1/builds) and a base creation's VM (POST
 * /sandbox/v1/bases). A real daemon with max_servers 1, the test base and real QEMU.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import { ApiError, CloudletClient } from '../../sandbox/client';
import { projectRoot } from '../../sandbox/common/paths';
import { startDaemon, testConfig, TEST_USERS, type TestDaemon } from './fixtures/daemon';

describe('daemon: builds and base creations count against max_servers (real QEMU)', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  after(async () => { await d?.stop(); });

  const refusedFull = (what: RegExp) => (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.httpStatus, 403, e.message);
    assert.equal(e.code, 'Forbidden');
    assert.match(e.message, what);
    return true;
  };

  it('while a build runs a server create is refused; after it the server starts; then a base creation is refused with the reason', async () => {
    d = await startDaemon({ ip: '127.0.0.2', withTestBase: true, config: testConfig({ max_servers: 1 }) });
    const login = (user: 'admin' | 'alice') => CloudletClient.login({ authUrl: d.authUrl, username: user, password: TEST_USERS[user], project: user === 'admin' ? 'admin' : 'demo' });
    const [admin, alice] = await Promise.all([login('admin'), login('alice')]);
    const imageRef = (await alice.listBases())[0].id;

    const build = await admin.call<{ job_id: string }>('cloudlet-sandbox', 'POST', '/builds', { build: { folder: path.join(projectRoot(), 'test/fixtures/sample-backend') } });
    await assert.rejects(alice.createServer({ name: 'during-build', imageRef }), refusedFull(/Quota exceeded for instances/));
    const built = await admin.watchJob(build.job_id);
    assert.equal(built.status, 'DONE', built.error);

    const s = await alice.createServer({ name: 'after-build', imageRef });
    assert.equal((await alice.waitServer(s.id, ['ACTIVE', 'ERROR'], { timeoutMs: 300_000 })).status, 'ACTIVE');
    await assert.rejects(admin.createBase({ name: 'no-room', source: 'test-guest' }),
      refusedFull(/cannot create base no-room now: this cloudlet already runs its limit of 1 VMs/));
    await assert.rejects(admin.call('cloudlet-sandbox', 'POST', '/builds', { build: { folder: path.join(projectRoot(), 'test/fixtures/sample-backend') } }),
      refusedFull(/cannot build sample-backend now/));
    assert.deepEqual((await admin.listJobs()).filter((j) => j.kind === 'base-create'), [], 'no base job was started');
    await alice.deleteServer(s.id);
  });
});
