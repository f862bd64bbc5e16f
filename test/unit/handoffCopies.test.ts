/**
 * A round's copies of its own chunks (Self records) applied as soon as the chunk they copy is
 * stored (applyStoredCopies, the destination) give the same images as all of them at the round's
 * end (finishCopies); a copy that refers forward waits for its chunk, and a copy of a chunk the
 * round never stores (or of another copy) is still refused at the end. Pure logic on an in-memory sink.
 */
import { strict as assert } from 'assert';
import { CloudletError } from '../../sandbox/common/errors';
import { CHUNK_SIZE, Encoding, encodeSegment, type ChunkRecord, type SegmentEntry, type Target } from '../../sandbox/overlay/format';
import { applyStoredCopies, decodeChunkRecords, finishCopies, newRoundChunks, type ChunkSink } from '../../sandbox/handoff/chunkRecords';

const page = (fill: number) => Buffer.alloc(CHUNK_SIZE, fill);
const raw = (index: number): ChunkRecord => ({ encoding: Encoding.Raw, index, ref: 0, refTarget: 'ram' });
const self = (index: number, ref: number, refTarget: Target = 'ram'): ChunkRecord => ({ encoding: Encoding.Self, index, ref, refTarget });

/** A chunk segment of `target` (records ascending), as decodeChunkRecords takes it. */
function segment(target: Target, records: ChunkRecord[], payload: Buffer[]): { entry: SegmentEntry & { target: Target }; raw: Buffer } {
  const data = encodeSegment(records, payload);
  return { entry: { digest: `sha256:${'b'.repeat(64)}`, kind: 'chunks', target, size: data.length, rawSize: data.length, records: records.length, chunks: records.map((r) => [r.index, 1]) } as SegmentEntry & { target: Target }, raw: data };
}

/** Images held in memory (chunk index -> content), and the sink writing them. */
function images() {
  const img: Record<Target, Map<number, Buffer>> = { ram: new Map(), disk: new Map() };
  const sink: ChunkSink = {
    base: (_t, _i, out) => out.fill(0),
    put: (t, i, data) => { img[t].set(i, Buffer.from(data ?? page(0))); },
  };
  const read = (t: Target, i: number, out: Buffer) => { out.fill(0); img[t].get(i)?.copy(out); return out; };
  return { img, sink, read };
}

const limits = { ram: 64, disk: 64 };

describe('handoff round copies: applied once their chunk is stored', () => {
  const segs = () => [
    // RAM chunk 1 copies chunk 0 (stored before it), chunk 2 copies chunk 9 (stored by the next segment).
    segment('ram', [raw(0), self(1, 0), self(2, 9)], [page(0xa0)]),
    // Disk chunk 3 copies RAM chunk 0; RAM chunk 9 stored; chunk 10 copies disk chunk 4 (stored after it).
    segment('disk', [self(3, 0, 'ram'), raw(4)], [page(0xd4)]),
    segment('ram', [raw(9), self(10, 4, 'disk')], [page(0xa9)]),
  ];

  it('give the same images as the copies done at the round\'s end, the forward ones waiting for their chunk', () => {
    const atEnd = images(), early = images();
    const roundEnd = newRoundChunks(), roundEarly = newRoundChunks();
    const pending: number[] = [];
    for (const s of segs()) {
      decodeChunkRecords(s.entry, s.raw, limits, atEnd.sink, roundEnd);
      decodeChunkRecords(s.entry, s.raw, limits, early.sink, roundEarly);
      applyStoredCopies(roundEarly, early.read, early.sink);
      pending.push(roundEarly.copies.length);
    }
    // After the first segment chunk 2 (copy of 9) waits; after the second, 2 still waits (9 not yet
    // stored) while disk 3 (copy of RAM 0) is done; after the third, none is left.
    assert.deepEqual(pending, [1, 1, 0]);
    assert.equal(early.img.ram.get(1)?.[0], 0xa0, 'a backward copy is there before the round ends');
    finishCopies(roundEnd, atEnd.read, atEnd.sink);
    finishCopies(roundEarly, early.read, early.sink);
    for (const t of ['ram', 'disk'] as const) {
      assert.deepEqual([...early.img[t].keys()].sort((a, b) => a - b), [...atEnd.img[t].keys()].sort((a, b) => a - b), t);
      for (const [i, b] of atEnd.img[t]) assert.ok(early.img[t].get(i)!.equals(b), `${t} chunk ${i}`);
    }
    assert.equal(early.img.ram.get(2)?.[0], 0xa9);
    assert.equal(early.img.ram.get(10)?.[0], 0xd4);
    assert.equal(early.img.disk.get(3)?.[0], 0xa0);
  });

  it('a copy of a chunk the round never stores, or of another copy, is still refused at the round\'s end', () => {
    for (const bad of [self(5, 30), self(5, 1)]) {
      const { sink, read } = images();
      const round = newRoundChunks();
      const s = segment('ram', [raw(0), self(1, 0), bad], [page(1)]);
      decodeChunkRecords(s.entry, s.raw, limits, sink, round);
      applyStoredCopies(round, read, sink);
      assert.equal(round.copies.length, 1, 'the bad copy waits');
      assert.throws(() => finishCopies(round, read, sink), (e: unknown) => e instanceof CloudletError && e.code === 'Corrupt' && /which this round does not carry/.test(e.message));
    }
  });
});
