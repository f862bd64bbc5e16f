import { strict as assert } from 'assert';
import { isCloudletError } from '../../sandbox/common/errors';
import { fetchSegment } from '../../sandbox/overlay/apply';
import { segmentName, type SegmentEntry } from '../../sandbox/overlay/format';
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

  it('refused as without a pool, in the same order (name, then frame, then content): bytes not hashing to their name, two frames, a skippable frame first, another declared size', async () => {
    const raw = Buffer.alloc(256 << 10, 7);
    const { entry, stored } = await segment(raw);
    const other = await segment(Buffer.alloc(256 << 10, 8)); // a good frame of the same size, under the first one's name
    const pool = new DecodeBuffers();
    await assert.rejects(fetchSegment(entry, { getSegment: async () => other.stored }, compressor, undefined, pool), refused(new RegExp(`segment ${entry.digest} is corrupt: its bytes hash to ${other.entry.digest}`)));
    const flipped = Buffer.from(stored);
    flipped[flipped.length >> 1] ^= 1;
    await assert.rejects(fetchSegment(entry, { getSegment: async () => flipped }, compressor, undefined, pool), refused(/is corrupt: its bytes hash to sha256:/));
    for (const at of [1, 10]) { // in the frame's magic, in its header: the name is checked first, as without a pool
      const bad = Buffer.from(stored);
      bad[at] ^= 1;
      await assert.rejects(fetchSegment(entry, { getSegment: async () => bad }, compressor, undefined, pool), refused(/is corrupt: its bytes hash to sha256:/));
    }
    // A size other than the frame declares: its declared size comes back, nothing is decompressed.
    const short = await compressor.decompressNamedInto(stored, raw.length - 1, pool, entry.digest);
    assert.equal(short.declared, raw.length);
    assert.equal(short.data, undefined);
    // Two frames, or a skippable frame first: not one frame declaring its size (null), refused by fetchSegment.
    const two = Buffer.concat([stored, stored]);
    const named = { ...entry, digest: segmentName(two), size: two.length };
    assert.equal((await compressor.decompressNamedInto(two, raw.length, pool, named.digest)).declared, null);
    await assert.rejects(fetchSegment(named, { getSegment: async () => two }, compressor, undefined, pool), refused(/is not one zstd frame declaring its decompressed size; refused/));
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]), stored]);
    const named2 = { ...entry, digest: segmentName(skippable), size: skippable.length };
    await assert.rejects(fetchSegment(named2, { getSegment: async () => skippable }, compressor, undefined, pool), refused(/is not one zstd frame declaring its decompressed size; refused/));
    // A frame declaring another size than the manifest's: refused as a possible bomb, before decompressing.
    const other2 = await segment(Buffer.alloc(300 << 10, 9));
    await assert.rejects(fetchSegment({ ...other2.entry, rawSize: raw.length }, { getSegment: async () => other2.stored }, compressor, undefined, pool), refused(/would decompress to 307200 bytes \(manifest: 262144,/));
    // The pool's buffers still work after refusals.
    const ok = await fetchSegment(entry, { getSegment: async () => stored }, compressor, undefined, pool);
    assert.ok(ok.equals(raw));
  });
});
