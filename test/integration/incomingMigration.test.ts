/**
 * Incoming migration (device state loaded into a QEMU started with -incoming defer), real QEMU:
 *  - many resumes, several at once, each ends running and answers a guest command (regression for
 *    launches that hung forever: QEMU had loaded the state and closed the socket, while our side
 *    waited for a paused file stream's 'end' that never came);
 *  - a load that never finishes fails at the deadline with a Timeout naming the phase and QEMU's
 *    status, ends the QEMU and removes the half-made sandbox.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { SandboxManager } from '../../sandbox/sandboxes/sandboxManager';
import { tempHome, type TempHome, qemuPidsUnder } from './fixtures/testBase';

describe('incoming migration: device state load (real QEMU)', function () {
  this.timeout(900_000);
  let th: TempHome;
  before(async () => { th = await tempHome(); });
  after(async () => { await th?.cleanup(); });

  it('12 resumes, 3 at a time: each loads its device state, runs and answers a guest command', async () => {
    const total = 12;
    let next = 0;
    const done: string[] = [];
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const s = await th.manager.resume(th.baseId, { name: `inc-${i}` });
        assert.equal(s.status, 'running');
        const r = await th.manager.exec(s.id, `echo launched-${i}`, { timeoutMs: 60_000 });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.equal(r.stdout.trim(), `launched-${i}`);
        await th.manager.delete(s.id);
        done.push(s.id);
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    assert.equal(done.length, total);
    assert.deepEqual(qemuPidsUnder(th.home), [], 'every QEMU ended');
  });

  it('a device state load that never finishes fails at the deadline, ends QEMU and removes the sandbox', async () => {
    const manager = new SandboxManager({ root: th.home, incomingTimeoutMs: 5000 });
    const before = process.env.CLOUDLET_FAILPOINT;
    process.env.CLOUDLET_FAILPOINT = 'incoming-stall'; // sends the first 4 KiB and keeps the socket open
    try {
      await assert.rejects(manager.resume(th.baseId, { name: 'stalled' }), (e: unknown) => {
        assert.ok(isCloudletError(e), String(e));
        assert.equal(e.code, 'Timeout');
        assert.match(e.message, /incoming migration: streaming and loading the device state did not finish within 5000 ms/);
        assert.match(e.message, /QEMU: status inmigrate/);
        return true;
      });
    } finally {
      if (before === undefined) delete process.env.CLOUDLET_FAILPOINT; else process.env.CLOUDLET_FAILPOINT = before;
      manager.close();
    }
    assert.equal(fs.existsSync(path.join(th.home, 'sandboxes', 'stalled')), false, 'the half-made sandbox is removed');
    assert.deepEqual(qemuPidsUnder(path.join(th.home, 'sandboxes', 'stalled')), [], 'its QEMU ended');
    // The store still works afterwards.
    const s = await th.manager.resume(th.baseId, { name: 'after-stall' });
    const r = await th.manager.exec(s.id, 'echo ok', { timeoutMs: 60_000 });
    assert.equal(r.stdout.trim(), 'ok');
    await th.manager.delete(s.id);
  });
});
