/** The daemon's launch-digests children: one at a time, in order; cancel unqueues or ends (a fake spawn: pure logic). */
import * as assert from 'assert';
import type { ChildProcess } from 'child_process';
import { EventEmitter } from 'events';
import { LaunchDigestsQueue, type LaunchDigestsJob } from '../../sandbox/sandboxes/launchDigestsJob';

class FakeChild extends EventEmitter {
  killed = false;
  constructor(readonly out: string) { super(); }
  kill(): boolean { this.killed = true; setImmediate(() => this.emit('exit', null, 'SIGTERM')); return true; }
}

const job = (out: string): LaunchDigestsJob => ({
  launchOverlay: `${out}/launch.overlay`, launchOverlayId: `${out}/launch.overlay.id`, out, baseId: 'a'.repeat(64),
  base: { ram: 'r', disk: 'd', ramDigests: 'rd', diskDigests: 'dd' }, ramBytes: 4096,
});
const tick = () => new Promise((r) => setImmediate(r));

describe('launch digests queue', () => {
  let started: FakeChild[];
  let q: LaunchDigestsQueue;
  beforeEach(() => {
    started = [];
    q = new LaunchDigestsQueue((_vm, j) => { const c = new FakeChild(j.out); started.push(c); return c as unknown as ChildProcess; });
  });

  it('runs one child at a time, in the order the VMs were synthesized; a job already queued is not added twice', () => {
    q.add('a', job('A')); q.add('b', job('B')); q.add('c', job('C')); q.add('b', job('B'));
    assert.deepEqual(started.map((c) => c.out), ['A']);
    assert.ok(q.has('B') && q.has('C') && !q.has('D'));
    started[0].emit('exit', 0, null);
    assert.deepEqual(started.map((c) => c.out), ['A', 'B']);
    started[1].emit('exit', 1, null);
    started[2].emit('exit', 0, null);
    assert.deepEqual(started.map((c) => c.out), ['A', 'B', 'C']);
    assert.equal(q.running(), undefined);
    assert.ok(!q.has('A') && !q.has('C'));
  });

  it('cancel takes a waiting job out of the queue, ends the running one (the next starts), and says when there was none', async () => {
    q.add('a', job('A')); q.add('b', job('B')); q.add('c', job('C'));
    assert.ok(q.cancel('B'));
    assert.ok(!q.has('B'));
    assert.ok(q.cancel('A'));
    assert.ok(started[0].killed);
    assert.deepEqual(started.map((c) => c.out), ['A', 'C']);
    await tick(); // A's exit after its kill frees nothing twice
    assert.equal(q.running(), 'C');
    assert.equal(started.length, 2);
    assert.ok(!q.cancel('B') && !q.cancel('Z'));
  });

  it('a child that fails to start (error without exit) or a spawn that throws frees the slot for the next', () => {
    let throws = true;
    const q2 = new LaunchDigestsQueue((_vm, j) => {
      if (j.out === 'A' && throws) { throws = false; throw new Error('no nice'); }
      const c = new FakeChild(j.out); started.push(c); return c as unknown as ChildProcess;
    });
    q2.add('a', job('A')); q2.add('b', job('B')); q2.add('c', job('C'));
    assert.deepEqual(started.map((c) => c.out), ['B']);
    started[0].emit('error', new Error('ENOENT'));
    assert.deepEqual(started.map((c) => c.out), ['B', 'C']);
    started[0].emit('exit', -2, null); // a late exit after the error starts nothing more
    assert.equal(started.length, 2);
  });

  it('stopAll ends the running child and forgets the waiting ones (the daemon exits)', () => {
    q.add('a', job('A')); q.add('b', job('B'));
    q.stopAll();
    assert.ok(started[0].killed);
    assert.ok(!q.has('A') && !q.has('B'));
    started[0].emit('exit', null, 'SIGTERM');
    assert.equal(started.length, 1);
  });
});
