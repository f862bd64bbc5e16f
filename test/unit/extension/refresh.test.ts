import { strict as assert } from 'assert';
import { RefreshScheduler, viewsForTopic, type Timers } from '../../../extension/state/refresh';

/** A clock the test moves by hand. */
class FakeTimers implements Timers {
  t = 0;
  private q: Array<{ at: number; fn: () => void; id: number }> = [];
  private next = 1;
  set(fn: () => void, ms: number) { const id = this.next++; this.q.push({ at: this.t + ms, fn, id }); return id; }
  clear(h: unknown) { this.q = this.q.filter((x) => x.id !== h); }
  now() { return this.t; }
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      this.q.sort((a, b) => a.at - b.at);
      const x = this.q[0];
      if (!x || x.at > end) break;
      this.q.shift();
      this.t = x.at;
      x.fn();
    }
    this.t = end;
  }
}

describe('extension refresh scheduling', () => {
  it('a burst of events becomes one refresh', () => {
    const clock = new FakeTimers();
    let n = 0;
    const s = new RefreshScheduler(() => n++, 300, 2000, clock);
    for (let i = 0; i < 10; i++) { s.request(); clock.advance(50); }
    assert.equal(n, 0);
    clock.advance(300);
    assert.equal(n, 1);
  });

  it('a steady stream still refreshes at least every maxWait', () => {
    const clock = new FakeTimers();
    let n = 0;
    const s = new RefreshScheduler(() => n++, 300, 1000, clock);
    for (let i = 0; i < 40; i++) { s.request(); clock.advance(100); }
    assert.ok(n >= 3, `refreshed ${n} times`);
  });

  it('hidden: nothing runs, the view is stale; shown again: one refresh at once', () => {
    const clock = new FakeTimers();
    let n = 0;
    const s = new RefreshScheduler(() => n++, 300, 2000, clock);
    s.setVisible(false);
    for (let i = 0; i < 5; i++) s.request();
    clock.advance(5000);
    assert.equal(n, 0);
    assert.equal(s.isStale, true);
    s.setVisible(true);
    assert.equal(n, 1);
    assert.equal(s.isStale, false);
    s.setVisible(false); s.setVisible(true);
    assert.equal(n, 1, 'no refresh when nothing changed while hidden');
  });

  it('hiding drops a pending refresh and keeps it for later', () => {
    const clock = new FakeTimers();
    let n = 0;
    const s = new RefreshScheduler(() => n++, 300, 2000, clock);
    s.request();
    s.setVisible(false);
    clock.advance(1000);
    assert.equal(n, 0);
    s.setVisible(true);
    assert.equal(n, 1);
  });

  it('now() skips the debounce; dispose stops everything', () => {
    const clock = new FakeTimers();
    let n = 0;
    const s = new RefreshScheduler(() => n++, 300, 2000, clock);
    s.request(); s.now();
    assert.equal(n, 1);
    clock.advance(1000);
    assert.equal(n, 1);
    s.dispose(); s.request(); clock.advance(1000);
    assert.equal(n, 1);
  });

  it('event topics map to views', () => {
    assert.deepEqual(viewsForTopic('servers', 'local'), ['sandbox']);
    assert.deepEqual(viewsForTopic('servers', 'remote'), ['cloudlets']);
    assert.deepEqual(viewsForTopic('images', 'local'), ['sandbox', 'overlays']);
    assert.deepEqual(viewsForTopic('leases', 'remote'), ['devices']);
    assert.deepEqual(viewsForTopic('nonsense', 'local'), []);
  });
});
