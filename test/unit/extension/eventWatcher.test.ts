import { strict as assert } from 'assert';
import { EventWatcher } from '../../../extension/eventWatcher';
import type { ChangeEvent, CloudletSession } from '../../../extension/api';

/** Fake sessions whose event streams the test drives: emit events, end a stream with an error. */
function fakeCloudlets(names: string[]) {
  const streams = new Map<string, { onEvent: (e: ChangeEvent) => void; onError: (e: unknown) => void; stopped: boolean }[]>();
  const forgotten: string[] = [];
  const cloudlets = {
    names: () => names,
    forget: (n: string) => { forgotten.push(n); },
    session: async (n: string) => ({
      watchEvents(onEvent: (e: ChangeEvent) => void, onError: (e: unknown) => void) {
        const s = { onEvent, onError, stopped: false };
        streams.set(n, [...(streams.get(n) ?? []), s]);
        return () => { s.stopped = true; };
      },
    }) as unknown as CloudletSession,
  };
  return { cloudlets, streams, forgotten, latest: (n: string) => streams.get(n)!.at(-1)! };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('extension event watcher', () => {
  it('one stream per cloudlet; events reach onEvent with the cloudlet name', async () => {
    const f = fakeCloudlets(['local', 'edge1']);
    const seen: string[] = [];
    const w = new EventWatcher(f.cloudlets, (n, e) => seen.push(`${n}:${e.topic}`), () => {});
    w.watchAll();
    await tick();
    f.latest('edge1').onEvent({ topic: 'servers', data: {} });
    f.latest('local').onEvent({ topic: 'images', data: {} });
    assert.deepEqual(seen, ['edge1:servers', 'local:images']);
    w.dispose();
    assert.ok(f.latest('local').stopped && f.latest('edge1').stopped, 'dispose stops every stream');
  });

  it('watchAll again replaces the streams and stops those of cloudlets no longer configured', async () => {
    const names = ['local', 'edge1'];
    const f = fakeCloudlets(names);
    const w = new EventWatcher(f.cloudlets, () => {}, () => {});
    w.watchAll();
    await tick();
    const first = f.latest('edge1');
    names.splice(1, 1);
    w.watchAll();
    await tick();
    assert.ok(first.stopped, 'the removed cloudlet stream is stopped');
    assert.equal(f.streams.get('local')!.length, 2, 'local reconnected once');
    assert.ok(f.streams.get('local')![0].stopped && !f.latest('local').stopped);
    w.dispose();
  });

  it('a stream that ends drops the session, says why, and reconnects after the backoff', async function () {
    this.timeout(10_000);
    const f = fakeCloudlets(['edge1']);
    const warnings: string[] = [];
    const w = new EventWatcher(f.cloudlets, () => {}, (m) => warnings.push(m));
    w.watchAll();
    await tick();
    f.latest('edge1').onError(new Error('socket hang up'));
    assert.deepEqual(f.forgotten, ['edge1']);
    assert.match(warnings[0], /event stream of edge1 ended/);
    assert.equal(f.streams.get('edge1')!.length, 1, 'no reconnect before the backoff');
    await new Promise((r) => setTimeout(r, 2300));
    assert.equal(f.streams.get('edge1')!.length, 2, 'reconnected after 2 s');
    w.dispose();
  });
});
