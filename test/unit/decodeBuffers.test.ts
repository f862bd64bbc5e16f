import { strict as assert } from 'assert';
import { isCloudletError } from '../../sandbox/common/errors';
import { fetchSegment } from '../../sandbox/overlay/apply';
import type { SegmentEntry } from '../../sandbox/overlay/format';
import { DecodeBuffers, SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import { prng } from './helpers/generatedImages';

describe('segments decompressed into reused buffers (synthesis)', function () {
  this.timeout(30000);
  let compressor: SegmentCompressor;
  before(() => { compressor = new SegmentCompressor(2); });
  after(async () => { await compressor.close(); });

  const segment = async (raw: Buffer) => {
    const c = await compressor.compress(raw, 3);
    const entry: SegmentEntry = { digest: c.digest, kind: 'chunks', target: 'ram', size: c.data.length, rawSize: raw.length, rawDigest: c.rawDigest };
    return { entry, stored: c.data };
  };
  const refused = (message: RegExp) => (e: unknown) => { assert.ok(isCloudletError(e) && e.code === 'Corrupt', String(e)); assert.match((e as Error).message, message); return true; };

  it('the same checked bytes as without a pool; buffers given back are reused, the source\'s bytes are left as they were', async () => {
    // Mostly zeros with a word per 4 KiB from a PRNG: compresses well, every segment different.
    const raws = [1, 3, 2].map((mib, k) => { const b = Buffer.alloc(mib << 20); const r = prng(7 + k, b.length / 1024); for (let i = 0; i < b.length; i += 4096) r.copy(b, i, i / 1024, i / 1024 + 4); return b; });
    const segs = await Promise.all(raws.map(segment));
    const pool = new DecodeBuffers(4);
    for (let round = 0; round < 3; round++) {
      for (const [i, s] of segs.entries()) {
        const before = Buffer.from(s.stored);
        const got = await fetchSegment(s.entry, { getSegment: async () => s.stored }, compressor, undefined, pool);
        assert.ok(got.equals(raws[i]), `segment ${i}, round ${round}`);
        assert.ok(s.stored.equals(before) && s.stored.length === s.entry.size, 'the stored bytes are copied, not moved');
        pool.give(got);
      }
    }
    assert.equal(pool.made, 1, 'one buffer served every segment, one at a time');
    pool.give(Buffer.alloc(16)); // not one of the pool's: ignored
    const plain = await fetchSegment(segs[0].entry, { getSegment: async () => segs[0].stored }, compressor);
    assert.ok(plain.equals(raws[0]));
  });

  it('refused: stored bytes that do not hash to their name (checked on the worker, before decompressing), and a frame holding more than the size given', async () => {
    const raw = Buffer.alloc(256 << 10, 7);
    const { entry, stored } = await segment(raw);
    const other = await segment(Buffer.alloc(256 << 10, 8)); // a good frame of the same size, under the first one's name
    const pool = new DecodeBuffers();
    await assert.rejects(fetchSegment(entry, { getSegment: async () => other.stored }, compressor, undefined, pool), refused(new RegExp(`segment ${entry.digest} is corrupt: its bytes hash to ${other.entry.digest}`)));
    const flipped = Buffer.from(stored);
    flipped[flipped.length >> 1] ^= 1;
    await assert.rejects(fetchSegment(entry, { getSegment: async () => flipped }, compressor, undefined, pool), refused(/is corrupt: its bytes hash to sha256:/));
    // The frame header lies to no one here, but the worker bounds the output by the size it is given anyway.
    await assert.rejects(compressor.decompressNamedInto(stored, raw.length - 1, pool, entry.digest), /zstd/i);
    // The pool's buffers still work after refusals.
    const ok = await fetchSegment(entry, { getSegment: async () => stored }, compressor, undefined, pool);
    assert.ok(ok.equals(raw));
  });
});
