/**
 * A chunk segment's records turned into chunk contents: the one decoding loop of a handoff round,
 * used by the destination applying a round (roundApplier.ts) and by the source decoding round 0 from
 * the launch overlay into its copy of what the destination holds (launchRound.ts), so both sides
 * read the same bytes the same way. Copies of other chunks (Self) are collected for the end of the
 * round (or made once their chunk is stored: RoundCopies); RoundCopies.finish checks each
 * one refers to a chunk the round stores.
 */
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE, decodeSegment, Encoding, expandRuns, type SegmentEntry, type Target } from '../overlay/format';

// Module-local copies: imported bindings are getters when run from TypeScript (tsx), read per chunk here.
const CHUNK = CHUNK_SIZE;
const ZERO = Encoding.Zero, BASE_RAM = Encoding.BaseRam, BASE_DISK = Encoding.BaseDisk, RAW = Encoding.Raw, XOR = Encoding.Xor, SELF = Encoding.Self;

export interface ChunkSink {
  /** The base image's chunk `index` of `target`, read into `out` (refused if outside the base). */
  base(target: Target, index: number, out: Buffer): Buffer;
  /**
   * Chunk `index` of `target` now holds `data` (undefined: zeros). `stable`: `data` is a view of the
   * segment's payload, unchanged until the segment is done; otherwise it is reused at the next call.
   */
  put(target: Target, index: number, data: Buffer | undefined, stable: boolean): void;
  /**
   * Optional: records that chunk `index` of `target` holds base chunk `ref` of `refTarget` without
   * reading it (a sink that keeps digests); false: read (base) and put as usual.
   */
  putBase?(target: Target, index: number, refTarget: Target, ref: number): boolean;
}

/** What one round's segments have stored so far, and the copies waiting for the round's end. */
export interface RoundChunks {
  stored: Record<Target, Set<number>>;
  copies: Array<{ target: Target; index: number; refTarget: Target; ref: number }>;
  chunks: number;
  scratch: Buffer;
}

export function newRoundChunks(): RoundChunks {
  return { stored: { ram: new Set(), disk: new Set() }, copies: [], chunks: 0, scratch: Buffer.alloc(CHUNK_SIZE) };
}

/** Decodes one chunk segment's records into `sink`; every index must be the listed one and inside `limits`. */
export function decodeChunkRecords(entry: SegmentEntry & { target: Target }, raw: Buffer, limits: Record<Target, number>, sink: ChunkSink, round: RoundChunks): void {
  const target = entry.target;
  const { records, payloadOffsets } = decodeSegment(raw, entry.digest);
  const expected = expandRuns(entry.chunks ?? []);
  if (records.length !== expected.length) throw new CloudletError('Corrupt', `segment ${entry.digest} holds ${records.length} records, its entry lists ${expected.length}`);
  const { scratch } = round;
  const limit = limits[target];
  const stored = round.stored[target];
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r.index !== expected[i] || r.index >= limit) throw new CloudletError('Corrupt', `segment ${entry.digest} record ${i}: ${target} chunk ${r.index} is not the listed one or outside the image`);
    const at = payloadOffsets[i];
    round.chunks++;
    switch (r.encoding) {
      case ZERO: sink.put(target, r.index, undefined, false); break;
      case BASE_RAM: if (!sink.putBase?.(target, r.index, 'ram', r.ref)) sink.put(target, r.index, sink.base('ram', r.ref, scratch), false); break;
      case BASE_DISK: if (!sink.putBase?.(target, r.index, 'disk', r.ref)) sink.put(target, r.index, sink.base('disk', r.ref, scratch), false); break;
      case RAW: sink.put(target, r.index, raw.subarray(at, at + CHUNK), true); break;
      case XOR: {
        const b = sink.base(target, r.index, scratch);
        for (let j = 0; j < CHUNK; j++) b[j] ^= raw[at + j];
        sink.put(target, r.index, b, false);
        break;
      }
      case SELF:
        if (r.ref >= limits[r.refTarget]) throw new CloudletError('Corrupt', `${target} chunk ${r.index} copies ${r.refTarget} chunk ${r.ref}, outside the image`);
        round.copies.push({ target, index: r.index, refTarget: r.refTarget, ref: r.ref });
        continue;
    }
    stored.add(r.index);
  }
}

/** Refuses a round with a copy of a chunk it does not store (or of another copy). */
export function checkCopies(round: RoundChunks): void {
  for (const c of round.copies) {
    if (!round.stored[c.refTarget].has(c.ref)) throw new CloudletError('Corrupt', `${c.target} chunk ${c.index} copies ${c.refTarget} chunk ${c.ref}, which this round does not carry`);
  }
}

type Copy = RoundChunks['copies'][number];

/**
 * A round's copies of its own chunks, made as soon as the chunk they copy is stored instead of at the
 * round's end (the destination: on a slow link they are done while the rest arrives, not after its last
 * byte). The same bytes as at the end: a round stores each chunk at most once (its runs ascend) and never
 * at a copy's index, so a stored chunk read then is final. Linear in the copies and chunks: a copy of a
 * chunk not stored yet waits by that chunk, never rescanned per segment (review 13 F1: a hostile round of
 * many forward copies and tiny segments cost minutes of CPU that way). Used by both sides (launchRound.ts).
 */
export class RoundCopies {
  private seen = 0;
  private readonly waiting: Record<Target, Map<number, Copy[]>> = { ram: new Map(), disk: new Map() };

  /** `copy` makes one copy; `beforeRead`: once before the first copy of each batch (pending writes land first). */
  constructor(private readonly round: RoundChunks, private readonly copy: (c: Copy) => void, private readonly beforeRead?: () => void) {}

  /** After the segment `entry` was applied (a chunk segment: decodeChunkRecords): the copies now possible; how many were made. */
  afterSegment(entry: SegmentEntry): number {
    const { round } = this;
    const ready: Copy[] = [];
    for (; this.seen < round.copies.length; this.seen++) {
      const c = round.copies[this.seen];
      if (round.stored[c.refTarget].has(c.ref)) { ready.push(c); continue; }
      const ws = this.waiting[c.refTarget].get(c.ref);
      if (ws) ws.push(c); else this.waiting[c.refTarget].set(c.ref, [c]);
    }
    const t = entry.kind === 'chunks' ? entry.target : undefined;
    const waiting = t === 'ram' || t === 'disk' ? this.waiting[t] : undefined;
    if (t && waiting?.size) {
      for (const index of expandRuns(entry.chunks ?? [])) {
        const ws = waiting.get(index);
        if (!ws || !round.stored[t].has(index)) continue;
        waiting.delete(index);
        for (const c of ws) ready.push(c);
      }
    }
    this.make(ready);
    return ready.length;
  }

  /** The round's end: refuses a copy of a chunk it does not carry (or of another copy), then makes the rest. */
  finish(): void {
    checkCopies(this.round);
    for (; this.seen < this.round.copies.length; this.seen++) {
      const c = this.round.copies[this.seen];
      const ws = this.waiting[c.refTarget].get(c.ref);
      if (ws) ws.push(c); else this.waiting[c.refTarget].set(c.ref, [c]);
    }
    const rest: Copy[] = [];
    for (const m of [this.waiting.ram, this.waiting.disk]) for (const ws of m.values()) rest.push(...ws);
    this.waiting.ram.clear();
    this.waiting.disk.clear();
    this.make(rest);
  }

  private make(copies: Copy[]): void {
    if (!copies.length) return;
    this.beforeRead?.();
    for (const c of copies) this.copy(c);
  }
}
