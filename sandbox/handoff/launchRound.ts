/**
 * Round 0 from the VM's launch overlay. A VM made by synthesis keeps the overlay it was made from
 * (SandboxFiles.launchOverlay). Its segments, already compressed, describe the launch state against
 * the base the destination holds, so round 0 sends them as they are (no compare, hash, encode or
 * compress of the ~100k pages of a launch state while the handoff waits), and the source decodes
 * the same bytes into its copy of what the destination holds (RAM shadow, disk chunks sent); the
 * next round (the usual compare) then carries only what changed since the launch.
 * Correct whatever the file holds: what is decoded is exactly what is sent, and the destination
 * checks a round made of overlay segments as it checks any round (roundReader.ts, roundApplier.ts).
 */
import * as fs from 'fs';
import { fetchSegment } from '../overlay/apply';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE, type CompressionUnit, type SegmentEntry, type Target } from '../overlay/format';
import { checkSegmentDigest, OverlayReader } from '../overlay/overlayReader';
import type { SegmentCompressor } from '../overlay/segmentCompressor';
import { zstdFrameContentSize } from '../overlay/segmentCompressor';
import { decodeChunkRecords, newRoundChunks, RoundCopies, type ChunkSink } from './chunkRecords';
import { bufferedUnitSegments, type RoundSegment } from './roundReader';

/** Where the launch state goes at the source: what the destination holds once round 0 is applied. */
export interface LaunchStateSink {
  /**
   * The destination holds `data` as chunk `index` of `target`. `kept`: data is a view of a segment's
   * decompressed bytes, never changed afterwards (may be kept as is); else valid only during the call.
   */
  hold(target: Target, index: number, data: Buffer, kept: boolean): void;
  /** What the destination holds as chunk `index` of `target` (after hold() for chunks of this round). */
  held(target: Target, index: number, out: Buffer): Buffer;
  /**
   * Records a copy (chunk `index` of `target` holds what chunk `ref` of `refTarget` holds) without
   * its bytes, if the sink can (a digest copy); false: the bytes are read (held) and held.
   */
  holdCopy?(target: Target, index: number, refTarget: Target, ref: number): boolean;
  /** The same for a base chunk (BaseRam / BaseDisk records): false, its bytes are read (base) and held. */
  holdBase?(target: Target, index: number, refTarget: Target, ref: number): boolean;
}

export interface LaunchRound {
  overlayId: string;
  /** The round's segments (chunk segments only) and their compressed bytes, in manifest order. */
  segments: SegmentEntry[];
  /** The segments' compressed bytes (zstd), or with `units` the units' bytes (xz, the wire profile). Empty with `read`. */
  data: Buffer[];
  /**
   * Read with `lazy` (the launch-digests child): data[i] read from the file and checked only when
   * decoded, one at a time (not the whole overlay in memory); a bad one throws. `close` ends the file.
   */
  read?: (i: number) => Promise<Buffer>;
  close?: () => void;
  /** A launch overlay stored with the wire profile: the compression units holding `segments` (the device state's left out). */
  units?: CompressionUnit[];
  /** Chunks per image the round carries. */
  chunks: Record<Target, number>;
}

const XZ_UNITS_NOT_TAKEN = 'its launch overlay is stored as xz units (the wire profile) and the destination does not take them (feature xz-units not named)';

/**
 * A launch round read with units allowed (before the destination named its features), for a
 * destination that takes xz units (`units`) or not: as readLaunchRound with `{ units }` would have said.
 */
export function launchRoundFor(r: LaunchRound | { unusable: string }, units: boolean): LaunchRound | { unusable: string } {
  return 'unusable' in r || !r.units || units ? r : { unusable: XZ_UNITS_NOT_TAKEN };
}

/**
 * Opens the kept launch overlay if it can be round 0 for a VM on base `baseId` with images of
 * `sizes` bytes, made from the overlay `madeFrom` (its ID, recorded at synthesis): undefined with
 * the reason otherwise (no file, not that overlay any more, a child overlay, another base...).
 * Reads and checks every chunk segment (SHA-256 against its name, one zstd frame declaring its
 * size) before anything is sent.
 */
export async function readLaunchRound(file: string, madeFrom: string | undefined, baseId: string, sizes: Record<Target, number>,
  o: { units?: boolean; lazy?: boolean } = {}): Promise<LaunchRound | { unusable: string }> {
  if (!fs.existsSync(file)) return { unusable: 'the VM was not made by synthesis from an overlay file' };
  if (!madeFrom) return { unusable: 'the overlay the VM was made from is not recorded' };
  let reader: OverlayReader;
  try { reader = OverlayReader.open(file); } catch (e) { return { unusable: `its launch overlay does not open: ${(e as Error).message}` }; }
  let keepOpen = false;
  try {
    const m = reader.manifest;
    // The disk chunks the VM's layer does not map are never scanned again: the file must be the overlay applied.
    if (reader.overlayId !== madeFrom) return { unusable: `its launch overlay file is now overlay ${reader.overlayId?.slice(0, 12)}, not the ${madeFrom.slice(0, 12)} the VM was made from` };
    if (m.parent) return { unusable: 'its launch overlay is a child overlay (its parents are not kept)' };
    // xz units (the wire profile) go as they are only to a destination that decodes them (feature xz-units).
    if (m.compression.algorithm === 'xz' && !o.units) return { unusable: XZ_UNITS_NOT_TAKEN };
    if (m.baseId !== baseId) return { unusable: `its launch overlay is for base ${m.baseId.slice(0, 12)}, the VM runs ${baseId.slice(0, 12)}` };
    if (m.ram.size !== sizes.ram || m.disk.size !== sizes.disk) {
      return { unusable: `its launch overlay's images (RAM ${m.ram.size}, disk ${m.disk.size} bytes) are not the VM's (${sizes.ram}, ${sizes.disk})` };
    }
    const chunks: Record<Target, number> = { ram: 0, disk: 0 };
    if (m.compression.algorithm === 'xz') {
      // The units of chunk segments as stored (their length and name checked; decoded with its bounds
      // by decodeLaunchRound here and by the destination); the device state's unit stays out.
      const units: CompressionUnit[] = [], segments: SegmentEntry[] = [], data: Buffer[] = [];
      const readUnit = async (u: CompressionUnit): Promise<Buffer | string> => {
        const buf = await reader.getSegment(u.digest);
        if (buf.length !== u.size) return `its launch overlay's compression unit ${u.digest} is ${buf.length} bytes, its manifest says ${u.size}`;
        checkSegmentDigest(u.digest, buf);
        return buf;
      };
      let k = 0;
      for (const u of m.compression.units) {
        const held = m.segments.slice(k, k + u.segments);
        k += u.segments;
        if (held[0].kind !== 'chunks') continue;
        if (!o.lazy) {
          const buf = await readUnit(u);
          if (typeof buf === 'string') return { unusable: buf };
          data.push(buf);
        }
        units.push(u); segments.push(...held);
        for (const s of held) chunks[s.target!] += s.records ?? 0;
      }
      if (!o.lazy) return { overlayId: reader.overlayId, segments, data, units, chunks };
      keepOpen = true;
      return { overlayId: reader.overlayId, segments, data, units, chunks, close: () => reader.close(), read: async (i) => orThrow(await readUnit(units[i])) };
    }
    const segments = m.segments.filter((s) => s.kind === 'chunks');
    const readZstd = async (s: SegmentEntry): Promise<Buffer | string> => {
      const buf = await reader.getSegment(s.digest);
      checkSegmentDigest(s.digest, buf);
      if (zstdFrameContentSize(buf) !== s.rawSize) return `its launch overlay's segment ${s.digest} is not one zstd frame of ${s.rawSize} bytes`;
      return buf;
    };
    const data: Buffer[] = [];
    for (const s of segments) {
      if (!o.lazy) {
        const buf = await readZstd(s);
        if (typeof buf === 'string') return { unusable: buf };
        data.push(buf);
      }
      chunks[s.target!] += s.records ?? 0;
    }
    if (!o.lazy) return { overlayId: reader.overlayId, segments, data, chunks };
    keepOpen = true;
    return { overlayId: reader.overlayId, segments, data, chunks, close: () => reader.close(), read: async (i) => orThrow(await readZstd(segments[i])) };
  } catch (e) {
    return { unusable: `its launch overlay cannot be read: ${(e as Error).message}` };
  } finally {
    if (!keepOpen) reader.close();
  }
}

function orThrow(b: Buffer | string): Buffer {
  if (typeof b === 'string') throw new CloudletError('Corrupt', b);
  return b;
}

/**
 * One unit at a time (a lazy round: its bytes read when its turn comes), each decoded as
 * bufferedUnitSegments decodes it: one xz decoder and one unit's bytes at a time.
 */
async function* unitByUnit(r: LaunchRound, what: string): AsyncGenerator<RoundSegment> {
  let k = 0;
  for (let i = 0; i < r.units!.length; i++) {
    const u = r.units![i];
    const held = r.segments.slice(k, k + u.segments);
    k += u.segments;
    yield* bufferedUnitSegments([await r.read!(i)], [u], held, what);
  }
}

/**
 * Decodes round 0's segments into `sink` as the destination applies them (RoundApplier): zero,
 * base RAM/disk page at `ref`, raw, XOR with the base chunk at the same index, and copies of
 * chunks of this round last. `base` reads the base images (what the destination starts from).
 */
export async function decodeLaunchRound(r: LaunchRound, base: (target: Target, index: number, out: Buffer) => Buffer, sink: LaunchStateSink,
  compressor: Pick<SegmentCompressor, 'decompressNamed' | 'threads'>, signal?: AbortSignal): Promise<void> {
  const round = newRoundChunks();
  const zero = Buffer.alloc(CHUNK_SIZE);
  // The same decoding as the destination's (chunkRecords.ts); the images' sizes were checked in readLaunchRound.
  const limits: Record<Target, number> = { ram: Infinity, disk: Infinity };
  const chunkSink: ChunkSink = { base, put: (target, index, data, stable) => sink.hold(target, index, data ?? zero, stable && data !== undefined), ...(sink.holdBase ? { putBase: sink.holdBase } : {}) };
  const decode = (entry: SegmentEntry, raw: Buffer) => decodeChunkRecords({ ...entry, target: entry.target! }, raw, limits, chunkSink, round);
  // Decompressed on the workers a few at a time, decoded in order; xz units decoded as the
  // destination decodes them (same bounds and checks), every unit at once (bufferedUnitSegments) on
  // libuv's threads meanwhile.
  const pending: Array<Promise<Buffer>> = [];
  let next = 0;
  const what = 'round 0 (launch overlay)';
  const units = r.units ? (r.read ? unitByUnit(r, what) : bufferedUnitSegments(r.data, r.units, r.segments, what))[Symbol.asyncIterator]() : undefined;
  const start = () => {
    const i = next++;
    const p = units
      ? units.next().then((x) => { if (x.done || x.value.entry !== r.segments[i]) throw new CloudletError('Internal', `round 0: segment ${i} not decoded in order`); return x.value.data; })
      : fetchSegment(r.segments[i], { getSegment: async () => (r.read ? r.read(i) : r.data[i]) }, compressor, signal);
    p.catch(() => undefined);
    pending.push(p);
  };
  try {
    await decodeInOrder();
  } finally {
    // Ends the unit decoder (not awaited: segments asked ahead settle on their own).
    units?.return?.(undefined).catch(() => undefined);
  }

  async function decodeInOrder(): Promise<void> {
    while (next < r.segments.length && pending.length < compressor.threads + 1) start();
    // A copy of a chunk already stored is made at once, the others when a segment stores it (RoundCopies, as the destination).
    const copies = new RoundCopies(round, (c) => {
      if (!sink.holdCopy?.(c.target, c.index, c.refTarget, c.ref)) chunkSink.put(c.target, c.index, sink.held(c.refTarget, c.ref, round.scratch), false);
    });
    for (let i = 0; i < r.segments.length; i++) {
      const raw = await pending.shift()!;
      if (next < r.segments.length) start();
      const entry = r.segments[i];
      decode(entry, raw);
      copies.afterSegment(entry);
    }
    // Same rule as the destination: a copy refers to a chunk this round stores (not to another copy).
    copies.finish();
  }
}
