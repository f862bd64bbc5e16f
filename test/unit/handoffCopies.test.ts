/**
 * A round's copies of its own chunks (Self records) made as soon as the chunk they copy is stored
 * (RoundCopies, both sides) give the same images as all of them at the round's end; a copy that
 * refers forward waits for its chunk, a copy of a chunk the round never stores (or of another copy) is
 * still refused at the end, and a round of many forward copies in many small segments costs work
 * linear in its records (review 13 F1), not copies x segments. Pure logic on an in-memory sink.
 */
import { strict as assert } from 'assert';
import { CloudletError } from '../../sandbox/common/errors';
import { CHUNK_SIZE, Encoding, encodeSegment, type ChunkRecord, type SegmentEntry, type Target } from '../../sandbox/overlay/format';
import { checkCopies, decodeChunkRecords, newRoundChunks, RoundCopies, type ChunkSink, type RoundChunks } from '../../sandbox/handoff/chunkRecords';

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

/** The reference: every copy at the round's end (what the destination did before copies were made early). */
function copiesAtEnd(round: RoundChunks, read: (t: Target, i: number, out: Buffer) => Buffer, sink: ChunkSink): void {
  checkCopies(round);
  for (const c of round.copies) sink.put(c.target, c.index, read(c.refTarget, c.ref, round.scratch), false);
}

/** RoundCopies writing into `into`. */
const copier = (round: RoundChunks, into: ReturnType<typeof images>) =>
  new RoundCopies(round, (c) => into.sink.put(c.target, c.index, into.read(c.refTarget, c.ref, round.scratch), false));

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
    const early$ = copier(roundEarly, early);
    const made: number[] = [];
    for (const s of segs()) {
      decodeChunkRecords(s.entry, s.raw, limits, atEnd.sink, roundEnd);
      decodeChunkRecords(s.entry, s.raw, limits, early.sink, roundEarly);
      made.push(early$.afterSegment(s.entry));
    }
    // The first segment: chunk 1 (copy of 0); chunk 2 (copy of 9) waits. The second: disk 3 (copy of
    // RAM 0). The third: chunk 10 (copy of disk 4) and the waiting chunk 2, its chunk 9 now stored.
    assert.deepEqual(made, [1, 1, 2]);
    assert.equal(early.img.ram.get(1)?.[0], 0xa0, 'a backward copy is there before the round ends');
    copiesAtEnd(roundEnd, atEnd.read, atEnd.sink);
    early$.finish();
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
      const copies = new RoundCopies(round, (c) => sink.put(c.target, c.index, read(c.refTarget, c.ref, round.scratch), false));
      assert.equal(copies.afterSegment(s.entry), 1, 'the good copy is made, the bad one waits');
      assert.throws(() => copies.finish(), (e: unknown) => e instanceof CloudletError && e.code === 'Corrupt' && /which this round does not carry/.test(e.message));
    }
  });

  it('many forward copies then many one-chunk segments: work linear in the records, not copies x segments (review 13 F1)', () => {
    const C = 2000, S = 500, big = { ram: C + S, disk: 1 };
    const round = newRoundChunks();
    let lookups = 0;
    class CountingSet extends Set<number> { override has(v: number): boolean { lookups++; return super.has(v); } }
    round.stored.ram = new CountingSet();
    const into = images();
    const copies = copier(round, into);
    // Chunks 0..C-1 all copy the round's last chunk, stored by the last of S one-chunk segments.
    const last = C + S - 1;
    const first = segment('ram', Array.from({ length: C }, (_, i) => self(i, last)), []);
    decodeChunkRecords(first.entry, first.raw, big, into.sink, round);
    assert.equal(copies.afterSegment(first.entry), 0);
    let made = 0;
    for (let k = 0; k < S; k++) {
      const s = segment('ram', [raw(C + k)], [page(k === S - 1 ? 0x5e : 1)]);
      decodeChunkRecords(s.entry, s.raw, big, into.sink, round);
      made += copies.afterSegment(s.entry);
    }
    copies.finish();
    assert.equal(made, C, 'every copy made once its chunk was stored');
    for (let i = 0; i < C; i++) assert.equal(into.img.ram.get(i)?.[0], 0x5e, `chunk ${i}`);
    // A rescan of every waiting copy per segment would be C x S = 1,000,000 lookups.
    assert.ok(lookups < 4 * (C + S), `${lookups} lookups of the stored chunks`);
  });
});
