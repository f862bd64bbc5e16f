/**
 * POST /sandbox/v1/bases (what the editor's "Create Base VM..." calls, issue 12.3) against a real
 * daemon and real QEMU, with the test guest (the Debian and image sources take the same path and
 * are proven by debianFlow/debianImages through the CLI): a job with progress whose base is
 * advertised at once as a base image; admin only; bad bodies refused before a job starts; a guest
 * that never gets ready fails with its last console lines; a cancelled job leaves nothing.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletClient, type CreateBaseResult } from '../../sandbox/client';
import { isCloudletError } from '../../sandbox/common/errors';
import { startDaemon, TEST_USERS, type TestDaemon } from './fixtures/daemon';
import { qemuPidsUnder } from './fixtures/testBase';

describe('daemon: POST /sandbox/v1/bases makes a base VM as a job (real QEMU)', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  let admin: CloudletClient;
  const login = (user: keyof typeof TEST_USERS) => CloudletClient.login({ authUrl: d.authUrl, username: user, password: TEST_USERS[user], project: user === 'admin' ? 'admin' : 'demo' });
  const baseDirs = () => (fs.existsSync(path.join(d.dataDir, 'bases')) ? fs.readdirSync(path.join(d.dataDir, 'bases')) : []);
  const tmpLeft = () => (fs.existsSync(path.join(d.dataDir, 'tmp')) ? fs.readdirSync(path.join(d.dataDir, 'tmp')).filter((f) => f.startsWith('base-') || f.startsWith('image-')) : []);

  before(async () => {
    d = await startDaemon({ ip: '127.0.0.2' });
    admin = await login('admin');
  });
  after(async () => { await d?.stop(); });

  it('the test guest: progress from guest to digests, DONE with the base ID, listed as a base image at once', async () => {
    const { jobId } = await admin.createBase({ name: 'tg', source: 'test-guest' });
    const phases: string[] = [];
    const end = await admin.watchJob(jobId, (e) => { if (phases[phases.length - 1] !== e.phase) phases.push(e.phase); });
    assert.equal(end.status, 'DONE', end.error);
    const r = end.result as CreateBaseResult;
    assert.match(r.base_id, /^[0-9a-f]{64}$/);
    assert.equal(r.name, 'tg');
    assert.equal(r.origin?.kind, 'test-guest');
    for (const p of ['boot', 'save', 'digests', 'done']) assert.ok(phases.includes(p), `phase ${p} in ${phases.join(',')}`);
    assert.deepEqual(baseDirs(), [r.base_id]);
    const listed = await (await login('alice')).listBases();
    assert.deepEqual(listed.map((i) => [i.id, i.base_sha256_uuid]), [[r.image_id, r.base_id]], 'a member sees the new public base image');
    assert.deepEqual(tmpLeft(), []);
  });

  it('members may not; bad bodies are refused with what is wrong before a job starts', async () => {
    const alice = await login('alice');
    await assert.rejects(alice.createBase({ name: 'x', source: 'test-guest' }), (e) => isCloudletError(e, 'Forbidden'));
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ name: 'x', source: 'floppy' }, /base\.source "floppy": give "test-guest", "debian" or "image"/],
      [{ source: 'test-guest' }, /base\.name is required/],
      [{ name: '../x', source: 'test-guest' }, /base name/],
      [{ name: 'x', source: 'test-guest', shell: 'rm -rf /' }, /unknown field base\.shell/],
      [{ name: 'x', source: 'image', image: 'relative.qcow2' }, /absolute path/],
      [{ name: 'x', source: 'image', image: '/etc/hostname', ssh_key: 'not a key' }, /SSH key/],
      [{ name: 'x', source: 'debian', suite: 'jammy' }, /unknown Debian suite "jammy"/],
      [{ name: 'x', source: 'debian', packages: ['curl; reboot'] }, /is not a Debian package name/],
      [{ name: 'x', source: 'test-guest', packages: ['curl'] }, /base\.packages goes with source "debian"/],
      [{ name: 'x', source: 'test-guest', cpu_model: 'qemu64,ssse3' }, /not a feature flag/],
      [{ name: 'x', source: 'test-guest', no_agent: true }, /without the guest agent/],
      [{ name: 'x', source: 'test-guest', ram_mib: 1e9 }, /base\.ram_mib must be a whole number/],
    ];
    for (const [body, msg] of bad) {
      await assert.rejects(admin.createBase(body as never), (e) => isCloudletError(e, 'BadInput') && msg.test((e as Error).message), JSON.stringify(body));
    }
    await assert.rejects(admin.createBase({ name: 'x', source: 'image', image: '/nonexistent/disk.qcow2' }), (e) => isCloudletError(e, 'NotFound') && /no file \/nonexistent\/disk\.qcow2/.test((e as Error).message));
    assert.equal((await admin.listJobs()).filter((j) => j.kind === 'base-create').length, 1, 'only the first test\'s job exists');
  });

  it('an image file that is no disk image fails the job with the reason; nothing is left', async () => {
    const file = path.join(d.dataDir, 'notes.img');
    fs.writeFileSync(file, 'not a disk\n'.repeat(100));
    const { jobId } = await admin.createBase({ name: 'notes', source: 'image', image: file });
    const end = await admin.watchJob(jobId);
    assert.equal(end.status, 'ERROR');
    assert.equal(end.fault?.code, 'BadInput');
    assert.match(end.error ?? '', /neither a qcow2 or vmdk image nor a raw disk with a partition table/);
    assert.equal(baseDirs().length, 1);
    assert.deepEqual(tmpLeft(), []);
  });

  it('a guest that never gets ready: the job fails with Timeout and the last console lines; nothing is left', async () => {
    const { jobId } = await admin.createBase({ name: 'never', source: 'test-guest', no_agent: true, ready_marker: 'a line never printed', timeout_s: 45 });
    const end = await admin.watchJob(jobId);
    assert.equal(end.status, 'ERROR');
    assert.equal(end.fault?.code, 'Timeout');
    assert.match(end.fault?.message ?? '', /did not print "a line never printed" within 45 s\. Last console lines:\n[\s\S]*cloudlet-guest: ready/);
    assert.equal(baseDirs().length, 1);
    assert.deepEqual(tmpLeft(), []);
    assert.deepEqual(qemuPidsUnder(d.dataDir), []);
  });

  it('cancelling the job while the guest boots ends its QEMU and leaves nothing', async () => {
    const { jobId } = await admin.createBase({ name: 'cancelled', source: 'test-guest', no_agent: true, ready_marker: 'never printed', timeout_s: 600 });
    let asked = false;
    const end = await admin.watchJob(jobId, (e) => {
      if (e.phase === 'boot' && !asked) { asked = true; setTimeout(() => { void admin.cancelJob(jobId); }, 2000); }
    });
    assert.ok(asked);
    assert.equal(end.status, 'CANCELLED', end.error);
    assert.equal(baseDirs().length, 1);
    assert.deepEqual(tmpLeft(), []);
    assert.deepEqual(qemuPidsUnder(d.dataDir), []);
  });
});
