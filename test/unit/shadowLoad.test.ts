/**
 * The source's copy of the base RAM (ShadowPageTracker.load) read with the base's page digests:
 * only the runs that are not zero pages are read, and the copy is byte for byte the file. Read
 * while round 0 is decoded into it (loadBase's skip): the round's pages are never read over.
 * Where QEMU's first pass is held (firstPassGate) and which pages round 0 writes (launchRamPages).
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { dataRuns, ShadowPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { firstPassGate, launchRamPages } from '../../sandbox/handoff/handoffSender';
import type { SegmentEntry } from '../../sandbox/overlay/format';
import { prng } from './helpers/generatedImages';

const PAGE = 4096;
const digestsOf = (b: Buffer) => Buffer.concat(Array.from({ length: b.length / PAGE }, (_, i) => createHash('sha256').update(b.subarray(i * PAGE, (i + 1) * PAGE)).digest()));

describe('handoff shadow copy of the base RAM: only data runs read', () => {
  it('runs skip zero pages (gaps of 64 pages or less read through); no digests: the whole image', () => {
    const b = Buffer.alloc(1024 * PAGE);
    prng(1, 10 * PAGE).copy(b, 0);          // 0-9
    prng(2, PAGE).copy(b, 50 * PAGE);       // 50: gap 40 pages -> joined
    prng(3, 5 * PAGE).copy(b, 500 * PAGE);  // 500-504: gap > 64 -> own run
    prng(4, PAGE).copy(b, 1023 * PAGE);     // last page
    assert.deepEqual(dataRuns(b.length, digestsOf(b)), [[0, 51 * PAGE], [500 * PAGE, 505 * PAGE], [1023 * PAGE, 1024 * PAGE]]);
    assert.deepEqual(dataRuns(b.length), [[0, b.length]]);
    assert.deepEqual(dataRuns(b.length, digestsOf(Buffer.alloc(b.length))), [], 'all zero: nothing read');
    // Digests shorter than the image (never for a base's own list): the rest is read as is.
    assert.deepEqual(dataRuns(b.length, digestsOf(b).subarray(0, 600 * 32)), [[0, 51 * PAGE], [500 * PAGE, 505 * PAGE], [600 * PAGE, 1024 * PAGE]]);
  });

  it('loaded with the digests, the copy equals the file: a compare against the file itself finds nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shadow-'));
    try {
      const b = Buffer.alloc(3000 * PAGE);
      for (let i = 0; i < 3000; i += 7) prng(i + 1, PAGE).copy(b, i * PAGE);
      prng(99, 900 * PAGE).copy(b, 1500 * PAGE);
      const file = path.join(dir, 'ram.raw');
      fs.writeFileSync(file, b);
      const t = await ShadowPageTracker.load(file, 3000, { digests: digestsOf(b) });
      try {
        assert.equal(await t.scanFile(file, async () => undefined), 0);
        const page = Buffer.alloc(PAGE);
        for (const i of [0, 7, 1499, 1500, 2399, 2999]) assert.ok(t.page(i, page).equals(b.subarray(i * PAGE, (i + 1) * PAGE)), `page ${i}`);
      } finally { await t.close(); }
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('skipped pages (written by round 0 meanwhile) are never inside a run, not even through a gap', () => {
    const b = Buffer.alloc(1024 * PAGE);
    prng(1, 10 * PAGE).copy(b, 0);          // 0-9
    prng(2, PAGE).copy(b, 50 * PAGE);       // 50: the gap holds skipped page 30 -> not joined
    prng(3, 5 * PAGE).copy(b, 500 * PAGE);  // 500-504, 502 skipped
    const skip = new Uint8Array(1024);
    skip[30] = 1; skip[502] = 1; skip[5] = 1; skip[1000] = 1;
    assert.deepEqual(dataRuns(b.length, digestsOf(b), skip), [[0, 5 * PAGE], [6 * PAGE, 10 * PAGE], [50 * PAGE, 51 * PAGE], [500 * PAGE, 502 * PAGE], [503 * PAGE, 505 * PAGE]]);
    // Without digests: everything but the skipped pages.
    assert.deepEqual(dataRuns(8 * PAGE, undefined, Uint8Array.from([0, 1, 0, 0, 1, 1, 0, 0])), [[0, PAGE], [2 * PAGE, 4 * PAGE], [6 * PAGE, 8 * PAGE]]);
    for (const [from, to] of dataRuns(b.length, digestsOf(b), skip)) for (let i = from / PAGE; i < to / PAGE; i++) assert.equal(skip[i], 0, `page ${i} read`);
  });

  it('loaded while other pages are written into it (round 0 decoded), those pages keep what was written; the rest is the file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shadow-'));
    try {
      const pages = 6000;
      const b = prng(5, pages * PAGE);
      for (let i = 0; i < pages; i += 3) b.fill(0, i * PAGE, (i + 1) * PAGE);
      const file = path.join(dir, 'ram.raw');
      fs.writeFileSync(file, b);
      const skip = new Uint8Array(pages);
      const decoded = new Map<number, Buffer>();
      for (let i = 1; i < pages; i += 5) { skip[i] = 1; decoded.set(i, prng(10_000 + i, PAGE)); }
      const t = new ShadowPageTracker(undefined, pages);
      const loading = t.loadBase(file, { digests: digestsOf(b), skip });
      // "Decoded" while the reads run (each write lets the reads go on).
      for (const [i, d] of decoded) { t.hold(i, d); if (i % 50 === 1) await new Promise((r) => setImmediate(r)); }
      await loading;
      const page = Buffer.alloc(PAGE);
      for (let i = 0; i < pages; i++) {
        const want = decoded.get(i) ?? b.subarray(i * PAGE, (i + 1) * PAGE);
        assert.ok(t.page(i, page).equals(want), `page ${i}`);
      }
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('the first pass gate: the highest page with at least the given stream after it (zero pages ~9 bytes)', () => {
    const zeroFrom = (z: (i: number) => boolean) => ({ zero: z });
    // All data pages: 2 MiB of stream = 2 MiB / (4096 + 8) pages from the end.
    const n = Math.ceil((2 << 20) / (PAGE + 8));
    assert.equal(firstPassGate(zeroFrom(() => false), 262144), (262144 - n) * PAGE);
    // All zero: 9 bytes a page; 1 GiB of them is 2.25 MiB, so the gate is 2 MiB / 9 pages from the end.
    assert.equal(firstPassGate(zeroFrom(() => true), 262144), (262144 - Math.ceil((2 << 20) / 9)) * PAGE);
    // Less than 2 MiB in all (a small, mostly free RAM) -> 0: the gate is at the start.
    assert.equal(firstPassGate(zeroFrom(() => true), 100_000), 0);
    // Zero pages at the top count 9 bytes each: the gate is below them.
    const top = 100_000;
    const g = firstPassGate(zeroFrom((i) => i >= 262144 - top), 262144);
    assert.ok(g < (262144 - top) * PAGE && g > (262144 - top - n) * PAGE, `gate at page ${g / PAGE}`);
  });

  it('launchRamPages marks the RAM chunks listed by the segments of round 0 (not disk segments, not the device state)', () => {
    const seg = (target: 'ram' | 'disk' | undefined, chunks: Array<[number, number]>) => ({ kind: target ? 'chunks' : 'device-state', target, chunks } as unknown as SegmentEntry);
    const m = launchRamPages({ segments: [seg('ram', [[0, 3], [10, 2]]), seg('disk', [[5, 1]]), seg('ram', [[98, 5]]), seg(undefined, [])] }, 100);
    assert.deepEqual([...m.keys()].filter((i) => m[i]), [0, 1, 2, 10, 11, 98, 99]);
  });
});
