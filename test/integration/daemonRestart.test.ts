/**
 * Faults and restarts of a daemon with real VMs: a restart keeps servers (QEMU adopted), images and
 * users; a daemon killed during a synthesis comes back with the server ERROR or ACTIVE, no orphan
 * QEMU and no half-built files.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { startDaemon, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import Database from '../../sandbox/common/sqlite';
import { CloudletClient } from '../../sandbox/client';
import { qemuPidsUnder } from './fixtures/testBase';

describe('cloudlet daemon: restarts and crashes with VMs', function () {
  let d: TestDaemon;
  const login = () => CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
  before(async () => { d = await startDaemon({ ip: '127.0.0.2', withTestBase: true }); });
  after(async () => { await d?.stop(); });

  it('a restart keeps users, tokens, images and servers; the running QEMU is adopted', async () => {
    const c = await login();
    const base = (await c.listBases())[0];
    const { id, jobId } = await c.createServer({ name: 'keep', imageRef: base.id });
    assert.equal((await c.watchJob(jobId!)).status, 'DONE');
    const ov = await c.finishOverlay(id, 'keep-overlay');
    assert.equal((await c.watchJob(ov.jobId)).status, 'DONE');
    const pids = qemuPidsUnder(d.dataDir);
    assert.equal(pids.length, 1);
    await d.restart();
    const again = await CloudletClient.fromToken(d.authUrl, c.token);  // the old token still works
    assert.equal((await again.getServer(id)).status, 'ACTIVE');
    assert.deepEqual(qemuPidsUnder(d.dataDir), pids, 'the same QEMU, adopted');
    assert.equal((await again.getImage(ov.imageId)).status, 'active');
    await again.pauseServer(id);  // adopted VM answers control
    assert.equal((await again.getServer(id)).status, 'PAUSED');
    await again.deleteServer(id);
    assert.deepEqual(qemuPidsUnder(d.dataDir), []);
  });

  it('a daemon killed during a synthesis: after restart the server is ERROR or ACTIVE, no orphan QEMU, no half-built files', async () => {
    const c = await login();
    const base = (await c.listBases())[0];
    const src = await c.createServer({ name: 'src', imageRef: base.id });
    await c.watchJob(src.jobId!);
    const ov = await c.finishOverlay(src.id, 'crash-overlay');
    await c.watchJob(ov.jobId);
    await c.deleteServer(src.id);
    const s = await c.createServer({ name: 'cut', overlayUrl: `${c.endpoint('image')}/v2/images/${ov.imageId}/file` });
    // Kill as soon as the job reports its first progress (mid-download or mid-apply).
    await new Promise<void>((resolve) => {
      const ac = new AbortController();
      c.watchJob(s.jobId!, () => { ac.abort(); resolve(); }, ac.signal).then(() => resolve(), () => resolve());
    });
    await d.kill('SIGKILL');
    await d.start();
    const c2 = await CloudletClient.fromToken(d.authUrl, c.token);
    const after = await c2.getServer(s.id);
    assert.ok(['ERROR', 'ACTIVE'].includes(after.status), after.status);
    const live = qemuPidsUnder(d.dataDir);
    assert.equal(live.length, after.status === 'ACTIVE' ? 1 : 0, 'no orphan QEMU');
    if (after.status === 'ERROR') {
      assert.match(after.fault!.message, /interrupted/);
      assert.equal((await c2.getJob(s.jobId!)).status, 'ERROR');
    }
    const tmp = path.join(d.dataDir, 'tmp');
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => !f.startsWith('.')), [], 'no half-built files left in tmp');
    const sandboxes = fs.existsSync(path.join(d.dataDir, 'sandboxes')) ? fs.readdirSync(path.join(d.dataDir, 'sandboxes')) : [];
    assert.equal(sandboxes.length, after.status === 'ACTIVE' ? 1 : 0, 'no half-made sandbox');
    await c2.deleteServer(s.id);
  });
  it('a daemon stopped while a running server had a task (overlay-finish, handoff after the pause): after restart it is ACTIVE with the same VM', async () => {
    const c = await login();
    const base = (await c.listBases())[0];
    const { id, jobId } = await c.createServer({ name: 'busy', imageRef: base.id });
    assert.equal((await c.watchJob(jobId!)).status, 'DONE');
    const pids = qemuPidsUnder(d.dataDir);
    assert.equal(pids.length, 1);
    const setRow = (status: string, task: string) => {
      const db = new Database(path.join(d.dataDir, 'cloudlet.db'));
      try { db.prepare('UPDATE servers SET status = ?, task_state = ? WHERE id = ?').run(status, task, id); } finally { db.close(); }
    };
    // Cut during an overlay-finish: the VM runs on.
    await d.kill('SIGKILL');
    setRow('ACTIVE', 'image_snapshot');
    await d.start();
    let c2 = await CloudletClient.fromToken(d.authUrl, c.token);
    let s = await c2.getServer(id);
    assert.equal(s.status, 'ACTIVE', JSON.stringify(s.fault));
    assert.deepEqual(qemuPidsUnder(d.dataDir), pids, 'the same QEMU, adopted');
    // Cut during a handoff after the source paused the VM: the source still owns it and resumes it.
    await c2.pauseServer(id);
    await d.kill('SIGKILL');
    setRow('ACTIVE', 'migrating');
    await d.start();
    c2 = await CloudletClient.fromToken(d.authUrl, c.token);
    s = await c2.getServer(id);
    assert.equal(s.status, 'ACTIVE', JSON.stringify(s.fault));
    assert.ok(!s['OS-EXT-STS:task_state'], `task_state cleared: ${s['OS-EXT-STS:task_state']}`);
    assert.deepEqual(qemuPidsUnder(d.dataDir), pids, 'the same QEMU, adopted');
    await d.restart();  // adopt reads the VM's real state: running, not paused
    c2 = await CloudletClient.fromToken(d.authUrl, c.token);
    assert.equal((await c2.getServer(id)).status, 'ACTIVE', 'the VM was resumed, not only marked ACTIVE');
    await c2.pauseServer(id);  // the adopted VM answers control
    assert.equal((await c2.getServer(id)).status, 'PAUSED');
    await c2.deleteServer(id);
    assert.deepEqual(qemuPidsUnder(d.dataDir), []);
  });
});
