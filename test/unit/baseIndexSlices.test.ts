/**
 * The base's index built in slices (indexBaseInSlices, RoundEncoder.indexInBackground: a handoff's
 * source builds it while round 0 streams) is the index built at once (indexBase): every base digest
 * found at the same place, zero chunks left out, duplicates kept at their first chunk.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { indexBase, indexBaseInSlices, ZERO_DIGEST } from '../../sandbox/overlay/chunkEncoder';
import type { ChunkIndex } from '../../sandbox/overlay/chunkIndex';
import { RoundEncoder } from '../../sandbox/handoff/roundEncoder';

/** `n` digests: distinct ones, some zero chunks, some repeats of earlier ones (also across lists). */
function digests(n: number, seed: string, repeatFrom?: Buffer): Buffer {
  const out = Buffer.alloc(n * 32);
  for (let i = 0; i < n; i++) {
    let d: Buffer;
    if (i % 7 === 3) d = ZERO_DIGEST;
    else if (i % 11 === 5 && i > 20) d = out.subarray((i - 13) * 32, (i - 12) * 32);
    else if (repeatFrom && i % 13 === 1) d = repeatFrom.subarray((i % (repeatFrom.length / 32)) * 32, (i % (repeatFrom.length / 32)) * 32 + 32);
    else d = createHash('sha256').update(`${seed}${i}`).digest();
    d.copy(out, i * 32);
  }
  return out;
}

function sameIndex(a: ChunkIndex, b: ChunkIndex, lists: Buffer[]): void {
  assert.equal(a.size, b.size);
  for (const list of lists) {
    for (let off = 0; off < list.length; off += 32) assert.deepEqual(a.find(list, off), b.find(list, off), `digest at ${off}`);
  }
  assert.equal(a.find(ZERO_DIGEST), undefined, 'zero chunks are not indexed');
}

describe('the base index built in slices', function () {
  this.timeout(20_000);
  const ram = digests(5000, 'ram');
  const disk = digests(7001, 'disk', ram);

  it('indexBaseInSlices, any slice size, gives indexBase\'s index', () => {
    const whole = indexBase(ram, disk);
    for (const slice of [1, 999, 4096, 100_000]) {
      const g = indexBaseInSlices(ram, disk, slice);
      let steps = 0;
      for (;;) { const r = g.next(); if (r.done) { sameIndex(r.value, whole, [ram, disk]); break; } steps++; }
      assert.equal(steps, Math.ceil(5000 / slice) + Math.ceil(7001 / slice), `yields once per slice of ${slice}`);
    }
  });

  it('RoundEncoder: a background build, finished by begin() midway or left to end, gives the index built at once', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'index-slices-'));
    try {
      const ramFile = path.join(dir, 'ram'), diskFile = path.join(dir, 'disk');
      fs.writeFileSync(ramFile, Buffer.alloc(5000 * 4096)); fs.writeFileSync(diskFile, Buffer.alloc(7001 * 4096));
      const compressor = { threads: 1, compress: async (raw: Buffer) => ({ data: raw, digest: createHash('sha256').update(raw).digest('hex') }) };
      const index = (e: RoundEncoder) => (e as unknown as { baseIndex?: ChunkIndex }).baseIndex;
      const whole = indexBase(ram, disk);
      // Ended by begin() after a few slices (the first live round came first).
      const a = new RoundEncoder({ ramFile, diskFile, ramDigests: ram, diskDigests: disk }, compressor as never, 1);
      const bg = a.indexInBackground(1000);
      await new Promise((r) => setImmediate(r));
      assert.equal(index(a), undefined, 'still building after one turn');
      a.begin();
      sameIndex(index(a)!, whole, [ram, disk]);
      await bg;
      sameIndex(index(a)!, whole, [ram, disk]);
      a.close();
      // Left to end by itself.
      const b = new RoundEncoder({ ramFile, diskFile, ramDigests: ram, diskDigests: disk }, compressor as never, 1);
      await b.indexInBackground();
      sameIndex(index(b)!, whole, [ram, disk]);
      b.close();
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
});
