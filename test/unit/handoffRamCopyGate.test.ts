/**
 * The destination answers begin before the base RAM is copied into the session's RAM file
 * (handoffReceiver.ts): a round's RAM segments, and its end (copies read RAM back), wait for the
 * copy; the disk segments before them do not; a failed copy fails the round.
 */
import { strict as assert } from 'assert';
import { afterRamCopy } from '../../sandbox/handoff/handoffReceiver';
import type { SegmentEntry } from '../../sandbox/overlay/format';

const seg = (target: 'ram' | 'disk' | undefined, n: number) => ({ entry: { kind: target ? 'chunks' : 'device-state', target, digest: `d${n}` } as unknown as SegmentEntry, n });
async function* source<T>(xs: T[]): AsyncGenerator<T> { for (const x of xs) yield x; }

describe('handoff destination: RAM segments wait for the base RAM copy (afterRamCopy)', () => {
  it('yields the disk segments before the first RAM one at once, the RAM one and the end only after the copy', async () => {
    let copied!: () => void;
    const ramReady = new Promise<void>((r) => { copied = r; });
    const seen: string[] = [];
    const it = afterRamCopy(source([seg('disk', 1), seg('disk', 2), seg('ram', 3), seg('disk', 4), seg('ram', 5)]), ramReady);
    const run = (async () => { for await (const s of it) seen.push(`${s.entry.target}${s.n}`); seen.push('end'); })();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ['disk1', 'disk2'], 'only the disk segments before the copy finished');
    seen.push('copied');
    copied();
    await run;
    assert.deepEqual(seen, ['disk1', 'disk2', 'copied', 'ram3', 'disk4', 'ram5', 'end']);
  });

  it('a round without RAM segments still ends only after the copy (its copies may read RAM)', async () => {
    let copied!: () => void;
    const ramReady = new Promise<void>((r) => { copied = r; });
    const seen: string[] = [];
    const run = (async () => { for await (const s of afterRamCopy(source([seg('disk', 1), seg(undefined, 2)]), ramReady)) seen.push(String(s.n)); seen.push('end'); })();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ['1', '2']);
    copied();
    await run;
    assert.deepEqual(seen, ['1', '2', 'end']);
  });

  it('a failed copy (a full disk) fails the round at its first RAM segment', async () => {
    const ramReady = Promise.reject(new Error('No space left on device'));
    ramReady.catch(() => undefined);
    const seen: number[] = [];
    await assert.rejects(async () => { for await (const s of afterRamCopy(source([seg('disk', 1), seg('ram', 2)]), ramReady)) seen.push(s.n); }, /No space left/);
    assert.deepEqual(seen, [1]);
  });
});
