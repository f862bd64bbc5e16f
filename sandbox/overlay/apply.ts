/**
 * VM synthesis from files: base + overlay -> launch RAM file, qcow2 layer over the base disk and
 * device state, in a temporary folder renamed into place only when everything checked out.
 * Every segment is verified (size, SHA-256, declared and actual decompressed size, records equal to
 * the manifest's chunk list, every index in bounds) before a byte of it is used.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { onDiskFull, onDiskFullAsync } from '../common/hostErrors';
import { noProgress, ProgressSink } from '../common/progress';
import {
  CHUNK_SIZE as FORMAT_CHUNK_SIZE, decodeSegment, Encoding as FormatEncoding, expandRuns, LIMITS, OverlayManifest, SegmentEntry, Target, validateManifest,
} from './format';
import { cloneFileInBackground } from '../qemu/files';
import { checkSegmentDigest, checkSegmentName, SegmentSource } from './overlayReader';
import { Qcow2Reader } from './qcow2Reader';
import { Qcow2Writer } from './qcow2Writer';
import { RunWriter } from './runWriter';
import { runLengths, SpanReader } from './spanReader';
import { mergeAscending } from './overlayWriter';
import { DecodeBuffers, SegmentCompressor, zstdFrameContentSize } from './segmentCompressor';
import { decompressUnit } from './xzUnits';

// A local copy: run from the TypeScript sources (tsx: the bench's daemon, tests) an imported binding
// is read through a getter of its module's exports (two for a re-export) on every use in the hot loops.
const CHUNK_SIZE = FORMAT_CHUNK_SIZE, Encoding = FormatEncoding;

export interface ApplyBase {
  baseId: string;
  /** The base's RAM, or for a child overlay its parent's launch RAM. */
  ramFile: string;
  /** The base's disk (raw): the backing file of every launch disk layer. */
  diskFile: string;
  /** For a child overlay: its parent's launch (ID, and disk layer over `diskFile`). See parentChain.ts. */
  parent?: { overlayId: string; diskLayer: string };
}

export interface ApplyOptions {
  /** Final folder; must not exist yet. It appears (by rename) only when complete. */
  outDir: string;
  threads?: number;
  compressor?: SegmentCompressor;
  /** Segments fetched and decoded at once (default: threads + 2). */
  parallel?: number;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

/**
 * Where applyOverlayInto writes: a prepared launch's files (SandboxManager.prepareLaunch), whose
 * QEMU may already wait paused for its device state. `ramFile` holds the base RAM's copy, `diskLayer`
 * is rewritten in place (same inode: QEMU keeps an incoming image inactive and re-reads it when the
 * device state activates it): data clusters as they come, the metadata only once QEMU opened it.
 * Known once the launch is prepared; segments are fetched and decoded meanwhile.
 */
export interface ApplyTarget {
  /**
   * `ramLeftOut`: the base RAM copy leaves out every RAM chunk the overlay lists (ramChunksOf): they
   * read as zeros and the copy never writes them, so RAM pages are written without waiting for it
   * and zero pages are not written at all.
   */
  files: Promise<{ ramFile: string; diskLayer: string; ramLeftOut?: boolean }>;
  /** The base RAM copy in `ramFile` is complete: RAM pages may be written from then on (unless ramLeftOut). */
  ramReady: Promise<void>;
  /** QEMU has the disk layer open (inactive): from then on its metadata may be rewritten. */
  diskOpened: Promise<void>;
}

export interface ApplyResult {
  dir: string;
  ramFile: string;      // <dir>/ram.raw
  diskLayer: string;    // <dir>/disk.qcow2, backing file = base disk (raw)
  deviceState: string;  // <dir>/state.bin
  vmConfig: unknown;
  overlayId?: string;
  timings: { fetchDecodeMs: number; totalMs: number };
}

export const LAUNCH_FILES = { ram: 'ram.raw', disk: 'disk.qcow2', deviceState: 'state.bin', info: 'overlay.json' };

/** The most chunks read at once from the base and from the launch files being written: each read
 * covers the row of chunks the next records copy (runLengths), up to this. */
const READ_SPAN_CHUNKS = 256;

/** The stage a disk-full error names while launch chunks are written. */
const WRITING = 'synthesis: writing the launch RAM and disk';

/** A copy of a chunk stored elsewhere in the overlay; `seq`: its place among the overlay's copies. */
interface Deferred { target: Target; index: number; refTarget: Target; ref: number; seq: number }

type Decompressor = Pick<SegmentCompressor, 'decompressNamed'> & Partial<Pick<SegmentCompressor, 'decompressNamedInto'>>;

/**
 * Fetches one segment and returns its checked, decompressed bytes. With `pool` (and a compressor
 * that decompresses into buffers) they are in one of its buffers, which the caller may give back
 * once done with them.
 */
export async function fetchSegment(entry: SegmentEntry, source: SegmentSource, compressor: Decompressor, signal?: AbortSignal, pool?: DecodeBuffers): Promise<Buffer> {
  const buf = await source.getSegment(entry.digest, entry.size, signal);
  if (buf.length !== entry.size) {
    throw new CloudletError('Corrupt', `segment ${entry.digest} is ${buf.length} bytes but the manifest says ${entry.size} (truncated overlay or transfer)`);
  }
  let raw: Buffer | undefined, rawDigest: string | undefined;
  if (pool && compressor.decompressNamedInto) {
    // Into a pool's buffer: the same checks in the same order, made on the worker.
    let r: Awaited<ReturnType<SegmentCompressor['decompressNamedInto']>>;
    try {
      r = await compressor.decompressNamedInto(buf, entry.rawSize, pool, entry.digest);
    } catch (e) {
      throw new CloudletError('Corrupt', `segment ${entry.digest} does not decompress: ${(e as Error).message}`);
    }
    checkSegmentName(entry.digest, r.digest);
    if (r.declared !== undefined) checkFrameSize(entry, r.declared);
    ({ data: raw, rawDigest } = r);
    if (!raw) throw new CloudletError('Internal', `segment ${entry.digest}: no decompressed bytes`);
  } else {
    checkSegmentDigest(entry.digest, buf);
    checkFrameSize(entry, zstdFrameContentSize(buf));
    let named: { data: Buffer; rawDigest: string };
    try {
      named = await compressor.decompressNamed(buf);
    } catch (e) {
      throw new CloudletError('Corrupt', `segment ${entry.digest} does not decompress: ${(e as Error).message}`);
    }
    raw = named.data;
    // Read only when compared below: InlineZstd hashes the bytes only when asked.
    if (entry.rawDigest !== undefined) rawDigest = named.rawDigest;
  }
  if (raw.length !== entry.rawSize) {
    throw new CloudletError('Corrupt', `segment ${entry.digest} decompressed to ${raw.length} bytes, the manifest says ${entry.rawSize}; refused`);
  }
  // The content name the overlay ID covers (the compressed name alone is not in the ID).
  if (entry.rawDigest !== undefined && entry.rawDigest !== rawDigest) {
    throw new CloudletError('Corrupt', `segment ${entry.digest} decompresses to content ${rawDigest}, the manifest says ${entry.rawDigest}; refused`);
  }
  return raw;
}

/** Refuses a segment unless it is one zstd frame declaring (`declared`) the manifest's rawSize, within the limit. */
function checkFrameSize(entry: SegmentEntry, declared: number | null): void {
  if (declared === null) throw new CloudletError('Corrupt', `segment ${entry.digest} is not one zstd frame declaring its decompressed size; refused`);
  if (declared > LIMITS.segmentRawBytes || declared !== entry.rawSize) {
    throw new CloudletError('Corrupt', `segment ${entry.digest} would decompress to ${declared} bytes (manifest: ${entry.rawSize}, limit ${LIMITS.segmentRawBytes}); refused as a possible decompression bomb`);
  }
}

/**
 * The RAM chunks `manifest` lists (1 = listed; each is written by the apply, or a zero page):
 * what a prepared launch's base RAM copy may leave out (ApplyTarget's ramLeftOut).
 */
export function ramChunksOf(manifest: OverlayManifest): Uint8Array {
  return listedRamChunks(validateManifest(manifest));
}

/** ramChunksOf for a manifest already validated. */
function listedRamChunks(m: OverlayManifest): Uint8Array {
  const chunks = new Uint8Array(Math.ceil(m.ram.size / CHUNK_SIZE));
  for (const s of m.segments) if (s.kind === 'chunks' && s.target === 'ram') for (const [first, n] of s.chunks!) chunks.fill(1, first, first + n);
  return chunks;
}

/** Gets one segment's checked, decompressed bytes. */
export type SegmentFetcher = (entry: SegmentEntry) => Promise<Buffer>;

/**
 * A SegmentFetcher for `manifest`: each segment fetched on its own (zstd), or its compression unit
 * fetched, checked and decompressed once (xz; container version 2) and the segment cut from it. A
 * unit's bytes are dropped when its last segment was handed out, so at most the units in flight are
 * held. Each cut segment's SHA-256 is checked against its content name.
 */
export function segmentFetcher(manifest: OverlayManifest, source: SegmentSource, compressor: Decompressor, signal?: AbortSignal, pool?: DecodeBuffers): SegmentFetcher {
  const comp = manifest.compression;
  if (comp.algorithm !== 'xz') return (entry) => fetchSegment(entry, source, compressor, signal, pool);
  const where = new Map<string, { unit: number; offset: number }>();
  const left = comp.units.map((u) => u.segments);
  let k = 0;
  comp.units.forEach((u, unit) => {
    for (let j = 0, offset = 0; j < u.segments; j++, k++) {
      where.set(manifest.segments[k].digest, { unit, offset });
      offset += manifest.segments[k].rawSize;
    }
  });
  const decoded = new Map<number, Promise<Buffer>>();
  return async (entry) => {
    const w = where.get(entry.digest);
    if (!w) throw new CloudletError('Internal', `segment ${entry.digest} is in no compression unit`);
    let pending = decoded.get(w.unit);
    if (!pending) {
      const u = comp.units[w.unit];
      pending = (async () => decompressUnit(u, await source.getSegment(u.digest, u.size, signal), signal))();
      decoded.set(w.unit, pending);
    }
    let unit: Buffer;
    try {
      unit = await pending;
    } finally {
      if (--left[w.unit] === 0) decoded.delete(w.unit);
    }
    const raw = unit.subarray(w.offset, w.offset + entry.rawSize);
    const name = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
    if (raw.length !== entry.rawSize || name !== entry.rawDigest) {
      throw new CloudletError('Corrupt', `segment ${entry.digest} cut from compression unit ${comp.units[w.unit].digest} has content ${name}; refused`);
    }
    return raw;
  };
}

export async function applyOverlay(
  overlay: { manifest: OverlayManifest; overlayId?: string },
  source: SegmentSource,
  base: ApplyBase,
  opts: ApplyOptions,
): Promise<ApplyResult> {
  const r = await apply(overlay, source, base, opts);
  return r.result!;
}

/**
 * The same checks and writes into a prepared launch's files (`into`), nothing renamed: the device
 * state comes back as bytes for the waiting QEMU. On failure the files hold anything: the caller
 * discards the prepared launch. Standalone overlays only (a child is applied over its parent's
 * launch, not over the base RAM the prepared launch copied).
 */
export async function applyOverlayInto(
  overlay: { manifest: OverlayManifest; overlayId?: string },
  source: SegmentSource,
  base: Omit<ApplyBase, 'parent'>,
  into: ApplyTarget,
  opts: Omit<ApplyOptions, 'outDir'>,
): Promise<{ deviceState: Buffer; timings: { fetchDecodeMs: number; totalMs: number } }> {
  const r = await apply(overlay, source, base, { ...opts, outDir: '' }, into);
  return { deviceState: r.deviceState, timings: r.timings };
}

async function apply(
  overlay: { manifest: OverlayManifest; overlayId?: string },
  source: SegmentSource,
  base: ApplyBase,
  opts: ApplyOptions,
  into?: ApplyTarget,
): Promise<{ result?: ApplyResult; deviceState: Buffer; timings: { fetchDecodeMs: number; totalMs: number } }> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const manifest = validateManifest(overlay.manifest);
  if (manifest.baseId !== base.baseId) {
    throw new CloudletError('Mismatch', `overlay was made for base ${manifest.baseId}, but the base given is ${base.baseId}`, { hint: 'import or pull the base the overlay names, then synthesize against it' });
  }
  if ((manifest.parent?.id ?? '') !== (base.parent?.overlayId ?? '')) {
    throw new CloudletError('BadInput', manifest.parent
      ? `overlay ${overlay.overlayId?.slice(0, 12) ?? ''} is a child of overlay ${manifest.parent.id}: it is applied over its parent's launch (synthesize it with its chain)`
      : `overlay ${overlay.overlayId?.slice(0, 12) ?? ''} names no parent but was given one`);
  }
  const parentLayer = base.parent ? Qcow2Reader.open(base.parent.diskLayer) : undefined;
  const baseRamSize = fs.statSync(base.ramFile).size;
  let baseDiskSize: number;
  try {
    baseDiskSize = parentLayer ? parentLayer.info.virtualSize : fs.statSync(base.diskFile).size;
  } catch (e) { parentLayer?.close(); throw e; }
  if (baseRamSize !== manifest.base.ramSize || baseDiskSize !== manifest.base.diskSize || manifest.ram.size !== baseRamSize) {
    parentLayer?.close();
    throw new CloudletError('Mismatch', `base files do not have the sizes the overlay expects (RAM ${baseRamSize} vs ${manifest.base.ramSize}, disk ${baseDiskSize} vs ${manifest.base.diskSize})`);
  }
  if (into && parentLayer) { parentLayer.close(); throw new CloudletError('Internal', 'a child overlay is not applied into a prepared launch'); }
  if (!into && fs.existsSync(opts.outDir)) { parentLayer?.close(); throw new CloudletError('Conflict', `${opts.outDir} already exists`); }
  const baseRamChunks = baseRamSize / CHUNK_SIZE, baseDiskChunks = Math.ceil(baseDiskSize / CHUNK_SIZE);
  const chunkLimit: Record<Target, number> = { ram: manifest.ram.size / CHUNK_SIZE, disk: Math.ceil(manifest.disk.size / CHUNK_SIZE) };

  // Folder mode: everything in a temp folder renamed into place when complete.
  const tmp = into ? undefined : `${opts.outDir}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  if (tmp) { fs.mkdirSync(path.dirname(opts.outDir), { recursive: true }); fs.mkdirSync(tmp); }
  const compressor = opts.compressor ?? new SegmentCompressor(opts.threads);
  // Decompressed segments land in reused buffers, each given back once its segment is written.
  const buffers = new DecodeBuffers();
  const fetch = segmentFetcher(manifest, source, compressor, opts.signal, buffers);
  const fds: number[] = [];
  let writer: Qcow2Writer | undefined;
  let ramCopy: Promise<void> = Promise.resolve();
  let statePending: Promise<Buffer> | undefined;
  try {
    let ramPath = tmp ? path.join(tmp, LAUNCH_FILES.ram) : '';
    let diskPath = tmp ? path.join(tmp, LAUNCH_FILES.disk) : '';
    // A reflink, or a copy of the base RAM's data extents outside the pages this overlay lists,
    // on a thread of its own while the segments are fetched, decoded and written (`into`: the
    // prepared launch makes it). Without a reflink the listed pages are left out (holes: zeros):
    // the overlay's zero pages need no write and its other pages need not wait for the copy.
    let ramLeftOut = false;
    const pathsKnown = into ? into.files.then((t) => { ramPath = t.ramFile; diskPath = t.diskLayer; ramLeftOut = t.ramLeftOut === true; }) : Promise.resolve();
    if (into) ramCopy = Promise.all([pathsKnown, into.ramReady]).then(() => undefined);
    else {
      const copy = onDiskFull(ramPath, 'synthesis: copying the base RAM', () => cloneFileInBackground(base.ramFile, ramPath, { chunks: listedRamChunks(manifest), chunkSize: CHUNK_SIZE }));
      ramLeftOut = copy.leftOut;
      ramCopy = onDiskFullAsync(ramPath, 'synthesis: copying the base RAM', copy.done);
    }
    ramCopy.catch(() => { /* awaited below */ });
    pathsKnown.catch(() => { /* awaited below */ });
    const baseRamFd = fs.openSync(base.ramFile, 'r'); fds.push(baseRamFd);
    const baseDiskFd = fs.openSync(base.diskFile, 'r'); fds.push(baseDiskFd);
    const chunkSegments = manifest.segments.filter((s) => s.kind === 'chunks');
    const ownDisk: number[] = [];
    for (const s of chunkSegments) if (s.target === 'disk') for (const i of expandRuns(s.chunks!)) ownDisk.push(i);
    // A child's launch disk is one layer over the base disk: its parent's chunks, its own written over them.
    const inherited = parentLayer ? parentLayer.allocatedChunks().filter((i) => i < chunkLimit.disk) : [];
    const diskChunks = parentLayer ? mergeAscending(ownDisk, inherited) : ownDisk;
    const diskOptions = { virtualSize: manifest.disk.size, backingFile: path.resolve(base.diskFile), backingFormat: 'raw' as const, chunks: diskChunks };
    // The disk layer's writer, made once its file is known (at once in folder mode).
    let w!: Qcow2Writer;
    let diskRuns!: RunWriter;
    const openDisk = async () => {
      if (writer) return;
      let made = into ? Qcow2Writer.reuse(diskPath, diskOptions) : undefined;
      if (!made && into) await into.diskOpened; // QEMU must have read the empty layer before it is truncated
      if (writer) return;
      made ??= Qcow2Writer.create(diskPath, diskOptions);
      w = writer = made;
      diskRuns = new RunWriter(w.fileDescriptor);
    };
    if (!into) await openDisk();
    let ramFd = -1;
    const ramStored = new Uint8Array(chunkLimit.ram);           // 1 = final bytes written in phase 1
    const diskStored = new Uint8Array(diskChunks.length);
    // Copies wait by the chunk they copy (a list per chunk, moved to `ready` once it is stored):
    // linear in the copies whatever their order, never a scan of every waiting copy per segment.
    const waiting: Record<Target, Map<number, Deferred[]>> = { ram: new Map(), disk: new Map() };
    let ready: Deferred[] = [];
    let copySeq = 0;
    const release = (target: Target, index: number) => {
      const ws = waiting[target].get(index);
      if (!ws) return;
      waiting[target].delete(index);
      for (const d of ws) ready.push(d);
    };
    const scratch = Buffer.alloc(CHUNK_SIZE);
    const zero = Buffer.alloc(CHUNK_SIZE);

    // Base chunks are read a span at a time: most copies of base chunks come in runs (on the
    // realistic bench pair 78 % of the RAM pages copying base disk chunks name the chunk after the last one's).
    const baseRamSpans = new SpanReader(baseRamFd, baseRamSize, base.ramFile, READ_SPAN_CHUNKS);
    const baseDiskSpans = new SpanReader(baseDiskFd, fs.fstatSync(baseDiskFd).size, base.diskFile, READ_SPAN_CHUNKS);
    /** A base chunk: a view that stays valid only until the next read (copy it before changing it). */
    const readBase = (target: Target, index: number, out: Buffer, why: string, chunks: number): Buffer => {
      const limit = target === 'ram' ? baseRamChunks : baseDiskChunks;
      if (index >= limit) throw new CloudletError('Corrupt', `overlay ${why} refers to base ${target} chunk ${index}, outside the base image (${limit} chunks)`);
      if (target === 'disk' && parentLayer) return parentLayer.readChunk(index, out, baseDiskFd);
      const span = (target === 'ram' ? baseRamSpans : baseDiskSpans).chunk(index * CHUNK_SIZE, chunks);
      if (span) return span;
      out.fill(0); // a short last chunk
      fs.readSync(target === 'ram' ? baseRamFd : baseDiskFd, out, 0, CHUNK_SIZE, index * CHUNK_SIZE);
      return out;
    };
    // Writes go out in runs of consecutive pages / data clusters (one writev each), flushed at the
    // end of every segment and before anything is read back.
    let ramRuns: RunWriter | undefined;
    /** `copy`: the bytes are in a buffer reused before the run is written (scratch). */
    const write = (target: Target, index: number, data: Buffer, copy: boolean) => {
      // A write that ends a run writes the run out: a full disk shows here too.
      if (target === 'ram') onDiskFull(ramPath, WRITING, () => ramRuns!.write(index * CHUNK_SIZE, data, copy));
      else onDiskFull(diskPath, WRITING, () => diskRuns.write(w.claimChunk(index), data, copy));
    };
    /** A phase-1 write: the chunk's final bytes, which `self` records may copy. */
    const put = (target: Target, index: number, data: Buffer, copy: boolean) => {
      write(target, index, data, copy);
      if (target === 'ram') ramStored[index] = 1; else diskStored[w.positionOf(index)] = 1;
      if (waiting[target].size) release(target, index);
    };
    const flushRuns = () => {
      if (ramRuns) onDiskFull(ramPath, WRITING, () => ramRuns!.flush());
      if (diskRuns) onDiskFull(diskPath, WRITING, () => diskRuns.flush());
    };
    const openRam = () => {
      if (ramFd >= 0) return;
      ramFd = fs.openSync(ramPath, 'r+'); fds.push(ramFd);
      ramRuns = new RunWriter(ramFd);
    };

    /**
     * Copies of chunks stored elsewhere in this overlay, read back from the launch files (written:
     * runs are flushed first): after each segment those whose chunk is stored by then (a stored
     * chunk is final, and no copy writes a chunk a segment stores: each chunk comes once), at the
     * end all others (`all`: a chunk still not stored is refused).
     */
    let ramBack: SpanReader | undefined, diskBack: SpanReader | undefined;
    const isStored = (d: Deferred) => d.refTarget === 'ram' ? ramStored[d.ref] === 1 : (w.positionOf(d.ref) >= 0 && diskStored[w.positionOf(d.ref)] === 1);
    const copyDeferred = (all: boolean) => {
      const now = ready;
      ready = [];
      if (all) {
        for (const t of ['ram', 'disk'] as const) for (const ws of waiting[t].values()) for (const d of ws) now.push(d);
        waiting.ram.clear(); waiting.disk.clear();
      }
      if (!now.length) return;
      now.sort((a, b) => a.seq - b.seq); // the overlay's order: runs of pages stay runs
      // The readers are kept from pass to pass; what they held is stale (written since).
      if (ramFd >= 0) (ramBack ??= new SpanReader(ramFd, manifest.ram.size, ramPath, READ_SPAN_CHUNKS)).forget();
      (diskBack ??= new SpanReader(w.fileDescriptor, 0, diskPath, READ_SPAN_CHUNKS)).forget(fs.fstatSync(w.fileDescriptor).size);
      // Each read covers the row of chunks the next copies continue (as for the base).
      const backRam = new Float64Array(now.length).fill(NaN), backDisk = new Float64Array(now.length).fill(NaN);
      now.forEach((d, i) => {
        if (d.refTarget === 'ram') backRam[i] = d.ref * CHUNK_SIZE; else if (w.positionOf(d.ref) >= 0) backDisk[i] = w.hostOffsetOf(d.ref);
      });
      const backRamRun = runLengths(backRam, READ_SPAN_CHUNKS), backDiskRun = runLengths(backDisk, READ_SPAN_CHUNKS);
      for (let i = 0; i < now.length; i++) {
        const d = now[i];
        if (!isStored(d)) throw new CloudletError('Corrupt', `${d.target} chunk ${d.index} copies ${d.refTarget} chunk ${d.ref}, which this overlay does not store`);
        const data = d.refTarget === 'ram' ? ramBack?.chunk(d.ref * CHUNK_SIZE, backRamRun[i]) : diskBack!.chunk(w.hostOffsetOf(d.ref), backDiskRun[i] || 1);
        if (!data) throw new CloudletError('Internal', `${d.refTarget} chunk ${d.ref} is past the end of the launch file being written`);
        write(d.target, d.index, data, true);
      }
      flushRuns();
    };

    const applySegment = (entry: SegmentEntry, raw: Buffer) => {
      const target = entry.target!;
      const { records, payloadOffsets } = decodeSegment(raw, entry.digest);
      const expected = expandRuns(entry.chunks!);
      if (records.length !== expected.length) throw new CloudletError('Corrupt', `segment ${entry.digest} holds ${records.length} records but the manifest lists ${expected.length} chunks`);
      // The base chunks the records read, per base file: each read covers the row the next records continue.
      const ramAt = new Float64Array(records.length).fill(NaN), diskAt = new Float64Array(records.length).fill(NaN);
      for (let i = 0; i < records.length; i++) {
        const r = records[i];
        const from = r.encoding === Encoding.BaseRam ? 'ram' : r.encoding === Encoding.BaseDisk ? 'disk' : r.encoding === Encoding.Xor ? target : undefined;
        const at = (r.encoding === Encoding.Xor ? r.index : r.ref) * CHUNK_SIZE;
        if (from === 'ram') ramAt[i] = at; else if (from === 'disk' && !parentLayer) diskAt[i] = at;
      }
      const ramRun = runLengths(ramAt, READ_SPAN_CHUNKS), diskRun = runLengths(diskAt, READ_SPAN_CHUNKS);
      const run = (i: number) => ramRun[i] || diskRun[i] || 1;
      for (let i = 0; i < records.length; i++) {
        const r = records[i];
        if (r.index !== expected[i]) throw new CloudletError('Corrupt', `segment ${entry.digest} record ${i} is ${target} chunk ${r.index}, the manifest lists ${expected[i]}`);
        if (r.index >= chunkLimit[target]) throw new CloudletError('Corrupt', `segment ${entry.digest} names ${target} chunk ${r.index}, outside the ${target} image (${chunkLimit[target]} chunks)`);
        const at = payloadOffsets[i];
        switch (r.encoding) {
          case Encoding.Zero:
            // Left out of the RAM copy: a hole, zeros already (a chunk written before would not be; each chunk comes once).
            if (target === 'ram') {
              if (ramLeftOut && !ramStored[r.index]) { ramStored[r.index] = 1; if (waiting.ram.size) release('ram', r.index); } else put('ram', r.index, zero, false);
            } else w.markZero(r.index);
            break;
          case Encoding.BaseRam: put(target, r.index, readBase('ram', r.ref, scratch, `${target} chunk ${r.index}`, run(i)), true); break;
          case Encoding.BaseDisk: put(target, r.index, readBase('disk', r.ref, scratch, `${target} chunk ${r.index}`, run(i)), true); break;
          case Encoding.Raw: put(target, r.index, raw.subarray(at, at + CHUNK_SIZE), false); break;
          case Encoding.Xor: {
            const src = readBase(target, r.index, scratch, `xor of ${target} chunk ${r.index}`, run(i));
            if (src !== scratch) src.copy(scratch);
            const b = scratch;
            const bw = new Uint32Array(b.buffer, b.byteOffset, CHUNK_SIZE / 4);
            const d = raw.subarray(at, at + CHUNK_SIZE);
            const dw = d.byteOffset % 4 === 0 ? new Uint32Array(d.buffer, d.byteOffset, CHUNK_SIZE / 4) : new Uint32Array(Uint8Array.from(d).buffer);
            for (let k = 0; k < bw.length; k++) bw[k] ^= dw[k];
            put(target, r.index, b, true);
            break;
          }
          case Encoding.Self: {
            if (r.ref >= chunkLimit[r.refTarget]) throw new CloudletError('Corrupt', `segment ${entry.digest}: ${target} chunk ${r.index} copies ${r.refTarget} chunk ${r.ref}, outside the image`);
            const d: Deferred = { target, index: r.index, refTarget: r.refTarget, ref: r.ref, seq: copySeq++ };
            if (isStored(d)) { ready.push(d); break; }
            const ws = waiting[d.refTarget].get(d.ref);
            if (ws) ws.push(d); else waiting[d.refTarget].set(d.ref, [d]);
            break;
          }
        }
      }
      flushRuns();
    };

    // Phase 1: segments fetched, verified and decompressed several at a time; written in the main thread.
    const tFetch = Date.now();
    // The device state (small) decoded meanwhile: it is needed right after the last copy.
    statePending = fetch(manifest.segments.find((s) => s.kind === 'device-state')!);
    statePending.catch(() => { /* awaited after the segments */ });
    const total = chunkSegments.reduce((n, s) => n + s.size, 0);
    let done = 0, next = 0;
    const parallel = Math.max(1, opts.parallel ?? compressor.threads + 2);
    let failure: unknown;
    const workerLoop = async () => {
      while (failure === undefined && next < chunkSegments.length) {
        try {
          throwIfCancelled(opts.signal);
          const entry = chunkSegments[next++];
          const raw = await fetch(entry);
          if (failure !== undefined) return;
          if (!writer) { await pathsKnown; await openDisk(); }
          if (ramFd < 0 && entry.target === 'ram') { await (ramLeftOut ? pathsKnown : ramCopy); openRam(); }
          throwIfCancelled(opts.signal);
          applySegment(entry, raw);
          buffers.give(raw); // written (runs flushed): nothing holds a view of it
          copyDeferred(false);
          done += entry.size;
          progress({ phase: 'synthesize', done, total });
        } catch (e) {
          failure ??= e;
        }
      }
    };
    // Every loop ends before anything is torn down; the first error is the one reported.
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, chunkSegments.length)) }, workerLoop));
    if (failure !== undefined) throw failure;
    await pathsKnown;
    if (!ramLeftOut) await ramCopy; // else it writes none of the chunks phase 2 reads or writes
    await openDisk();
    openRam();

    // Phase 2: the copies whose chunk was not stored yet when their segment came.
    copyDeferred(true);
    // The parent's chunks this child leaves as they are.
    if (parentLayer && inherited.length) {
      const own = new Set(ownDisk);
      for (const i of inherited) {
        if (own.has(i)) continue;
        const data = parentLayer.readChunk(i, scratch, baseDiskFd);
        if (data.equals(zero)) w.markZero(i); else onDiskFull(diskPath, WRITING, () => w.writeChunk(i, data));
      }
    }
    const fetchDecodeMs = Date.now() - tFetch;

    const state = await statePending;
    throwIfCancelled(opts.signal);
    if (into) await into.diskOpened; // the metadata over the empty layer QEMU opened
    // No fsync: the files go straight to QEMU through the page cache, and a host crash loses the
    // sandbox anyway (a synthesis is redone from base + overlay).
    onDiskFull(diskPath, 'synthesis: finishing the disk layer', () => w.finish({ sync: false }));
    writer = undefined;
    await ramCopy;
    const fetchTimings = { fetchDecodeMs, totalMs: Date.now() - t0 };
    if (!tmp) return { deviceState: state, timings: fetchTimings };
    onDiskFull(path.join(tmp, LAUNCH_FILES.deviceState), 'synthesis: writing the device state', () => fs.writeFileSync(path.join(tmp, LAUNCH_FILES.deviceState), state));
    fs.writeFileSync(path.join(tmp, LAUNCH_FILES.info), JSON.stringify({ overlayId: overlay.overlayId, baseId: manifest.baseId, ...(manifest.parent ? { parent: manifest.parent } : {}), vmConfig: manifest.vmConfig }, null, 2));
    fs.renameSync(tmp, opts.outDir);
    const timings = { fetchDecodeMs, totalMs: Date.now() - t0 };
    return {
      deviceState: state, timings,
      result: {
        dir: opts.outDir,
        ramFile: path.join(opts.outDir, LAUNCH_FILES.ram),
        diskLayer: path.join(opts.outDir, LAUNCH_FILES.disk),
        deviceState: path.join(opts.outDir, LAUNCH_FILES.deviceState),
        vmConfig: manifest.vmConfig,
        overlayId: overlay.overlayId,
        timings,
      },
    };
  } finally {
    writer?.close();
    parentLayer?.close();
    await ramCopy.catch(() => { /* reported above */ });
    await statePending?.catch(() => { /* reported above */ }); // nothing in flight once torn down
    for (const fd of fds) { try { fs.closeSync(fd); } catch { /* closed */ } }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    if (!opts.compressor) await compressor.close();
  }
}
