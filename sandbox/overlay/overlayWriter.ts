/**
 * Creates an overlay from a base and a paused sandbox's files: one read of the sandbox's qcow2 layer
 * and launch RAM, each changed chunk encoded (chunkEncoder), ~1 MiB segments compressed on worker
 * threads while the scan goes on, then one container file written next to its destination and
 * renamed into place only when complete.
 */
import { hash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, ProgressSink } from '../common/progress';
import { ChunkEncoder, ZERO_CHUNK, ZERO_DIGEST } from './chunkEncoder';
import {
  canonicalJson, CHUNK_SIZE, ChunkRecord, emptyBreakdown, Encoding, ENCODING_NAMES, encodeContainerHeader,
  encodeSegment, endsSegment, FORMAT_NAME, FORMAT_VERSION, LIMITS, MAX_CHAIN_DEPTH, OverlayManifest, overlayIdOf,
  OverlayVmConfig, SegmentEntry, Target, TargetBreakdown, toRuns,
} from './format';
import { Qcow2Reader } from './qcow2Reader';
import { SegmentCompressor } from './segmentCompressor';
import { SpanReader } from './spanReader';

export interface BaseImages {
  baseId: string;
  ramFile: string;
  diskFile: string;
  /** Binary lists: 32-byte SHA-256 per 4 KiB chunk, in order (files or already-loaded buffers). */
  ramDigests: string | Buffer;
  diskDigests: string | Buffer;
  /**
   * Write a child overlay: records against this parent overlay's launch images (its synthesized
   * RAM, and its disk layer over `diskFile`) instead of the base's. `depth` is the parent's own
   * (0 for an overlay against the base); the child's is one more, at most MAX_CHAIN_DEPTH.
   */
  parent?: ParentLaunch;
}

/** A parent overlay's launch files (applyChain's output) and its place in its chain. */
export interface ParentLaunch { overlayId: string; depth: number; ramFile: string; diskLayer: string }

export interface LaunchImages {
  ramFile: string;       // launch RAM, page-aligned, same size as the base's
  diskLayer: string;     // the sandbox's qcow2 layer over the base disk
  deviceState: string;   // QEMU device state (RAM excluded)
  vmConfig: OverlayVmConfig; // the launch VM's configuration, carried in the manifest
}

export interface CreateOverlayOptions {
  /** Where the file goes: `outFile`, or `<outDir>/<overlayId>.overlay`. */
  outFile?: string;
  outDir?: string;
  level?: number;               // zstd level, default 3
  threads?: number;
  compressor?: SegmentCompressor; // shared pool (not closed here)
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface CreateOverlayResult {
  overlayId: string;
  path: string;
  manifest: OverlayManifest;
  bytes: number;
  timings: { scanMs: number; totalMs: number };
}

export const DEFAULT_LEVEL = 3;
export const DEVICE_STATE_LEVEL = 19;
const READ_BLOCK = 8 << 20; // for copying the segments into the container
/** Base chunks read at once for the XOR decision (literal chunks come in runs). */
const BASE_SPAN_CHUNKS = 16;

function loadDigests(src: string | Buffer, what: string): Buffer {
  const b = typeof src === 'string' ? fs.readFileSync(src) : src;
  if (b.length % 32) throw new CloudletError('Corrupt', `${what} digest list is ${b.length} bytes, not a multiple of 32`);
  return b;
}

/** Collects records of one image into segments; hands finished segments to `emit`. */
class SegmentBuilder {
  private records: ChunkRecord[] = [];
  private payload: Buffer[] = [];
  constructor(private readonly target: Target, private readonly emit: (target: Target, records: ChunkRecord[], payload: Buffer[]) => Promise<void>) {}
  async add(r: ChunkRecord, data?: Buffer): Promise<void> {
    this.records.push(r);
    if (data) this.payload.push(data);
    if (endsSegment(this.target, r, this.payload.length, this.records.length)) await this.flush();
  }
  async flush(): Promise<void> {
    if (!this.records.length) return;
    const records = this.records, payload = this.payload;
    this.records = []; this.payload = [];
    await this.emit(this.target, records, payload);
  }
}

export async function createOverlay(base: BaseImages, launch: LaunchImages, opts: CreateOverlayOptions = {}): Promise<CreateOverlayResult> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const level = opts.level ?? DEFAULT_LEVEL;
  if (!/^[0-9a-f]{64}$/.test(base.baseId)) throw new CloudletError('BadInput', `base ID ${JSON.stringify(base.baseId)} is not a 64-digit hex SHA-256`);
  if (!opts.outFile && !opts.outDir) throw new CloudletError('BadInput', 'createOverlay needs outFile or outDir');
  const parent = base.parent;
  if (parent && (!/^[0-9a-f]{64}$/.test(parent.overlayId) || !Number.isInteger(parent.depth) || parent.depth < 0)) throw new CloudletError('BadInput', 'parent overlay must be named by its 64-digit hex ID, with its depth');
  if (parent && parent.depth + 1 > MAX_CHAIN_DEPTH) {
    throw new CloudletError('BadInput', `overlay ${parent.overlayId.slice(0, 12)} is already ${parent.depth} hops from its base: a child would be ${parent.depth + 1}, over the cap of ${MAX_CHAIN_DEPTH}`, { hint: 'create it without --parent, or make a flat parent first: cloudlet overlay flatten PARENT' });
  }
  let diskDigests = loadDigests(base.diskDigests, 'base disk');
  const realDiskSize = fs.statSync(base.diskFile).size;
  const refRamFile = parent ? parent.ramFile : base.ramFile;
  const baseRamSize = fs.statSync(refRamFile).size;
  if (diskDigests.length / 32 !== Math.ceil(realDiskSize / CHUNK_SIZE)) throw new CloudletError('Corrupt', `base disk digest list has ${diskDigests.length / 32} entries for ${realDiskSize} bytes of disk`);
  const ramSize = fs.statSync(launch.ramFile).size;
  if (ramSize !== baseRamSize) throw new CloudletError('Mismatch', `launch RAM is ${ramSize} bytes but the base's is ${baseRamSize}`);
  const deviceState = fs.readFileSync(launch.deviceState);
  if (deviceState.length > LIMITS.segmentRawBytes) throw new CloudletError('BadInput', `device state of ${deviceState.length} bytes is larger than ${LIMITS.segmentRawBytes}`);

  const destDir = opts.outFile ? path.dirname(opts.outFile) : opts.outDir!;
  fs.mkdirSync(destDir, { recursive: true });
  const tmpBase = path.join(destDir, `.overlay-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
  const segFile = `${tmpBase}.segments`, outTmp = `${tmpBase}.partial`;
  const compressor = opts.compressor ?? new SegmentCompressor(opts.threads);
  const fds: number[] = [];
  let layer: Qcow2Reader | undefined;
  let parentLayer: Qcow2Reader | undefined;
  try {
    const baseRamFd = fs.openSync(refRamFile, 'r'); fds.push(baseRamFd);
    const baseDiskFd = fs.openSync(base.diskFile, 'r'); fds.push(baseDiskFd);
    // The images every record refers to: the base's, or for a child its parent's launch images
    // (RAM hashed whole, disk = the base's digests with the chunks the parent's layer maps re-hashed).
    let ramDigests: Buffer;
    let baseDiskSize = realDiskSize;
    if (parent) {
      progress({ phase: 'scan-parent', message: `hashing the launch images of parent ${parent.overlayId.slice(0, 12)}` });
      ramDigests = await compressor.hashChunks(parent.ramFile, baseRamSize);
      parentLayer = Qcow2Reader.open(parent.diskLayer);
      baseDiskSize = parentLayer.info.virtualSize;
      if (baseDiskSize !== realDiskSize) throw new CloudletError('Mismatch', `parent ${parent.overlayId.slice(0, 12)}'s disk is ${baseDiskSize} bytes, the base's ${realDiskSize}`);
      diskDigests = Buffer.from(diskDigests);
      const c = Buffer.alloc(CHUNK_SIZE);
      for (const i of parentLayer.allocatedChunks()) hash('sha256', parentLayer.readChunk(i, c, baseDiskFd), 'buffer').copy(diskDigests, i * 32);
    } else {
      ramDigests = loadDigests(base.ramDigests, 'base RAM');
    }
    if (ramDigests.length / 32 !== Math.ceil(baseRamSize / CHUNK_SIZE)) throw new CloudletError('Corrupt', `base RAM digest list has ${ramDigests.length / 32} entries for ${baseRamSize} bytes of RAM`);
    const pl = parentLayer;
    // Base chunks for the XOR decision, read a few at a time (the scan goes in ascending order).
    const baseRam = new SpanReader(baseRamFd, baseRamSize, refRamFile, BASE_SPAN_CHUNKS);
    const baseDisk = new SpanReader(baseDiskFd, realDiskSize, base.diskFile, BASE_SPAN_CHUNKS);
    const encoder = new ChunkEncoder(ramDigests, diskDigests, (target, index, out) => {
      if (target === 'disk' && pl) return index < Math.ceil(baseDiskSize / CHUNK_SIZE) ? pl.readChunk(index, out, baseDiskFd) : undefined;
      return (target === 'ram' ? baseRam : baseDisk).chunk(index * CHUNK_SIZE);
    });
    const segFd = fs.openSync(segFile, 'w'); fds.push(segFd);
    const segments: SegmentEntry[] = [];
    const breakdown: Record<Target, TargetBreakdown> = { ram: emptyBreakdown(), disk: emptyBreakdown() };
    // Compression runs on the workers while the scan continues; results are written in segment order.
    const queue: Array<{ entry: SegmentEntry; b: TargetBreakdown; job: Promise<{ data: Buffer; digest: string; rawDigest: string }> }> = [];
    const maxInflight = compressor.threads * 2 + 1;
    const writeOldest = async () => {
      const { entry, b, job } = queue.shift()!;
      const c = await job;
      entry.digest = c.digest; entry.size = c.data.length; entry.rawDigest = c.rawDigest;
      b.compressedBytes += c.data.length;
      fs.writeSync(segFd, c.data);
    };
    const emit = async (target: Target, records: ChunkRecord[], payload: Buffer[]) => {
      const raw = encodeSegment(records, payload);
      const entry: SegmentEntry = { digest: '', kind: 'chunks', target, size: 0, rawSize: raw.length, records: records.length, chunks: toRuns(records.map((r) => r.index)) };
      segments.push(entry);
      const b = breakdown[target];
      b.segments++; b.segmentRawBytes += raw.length; b.payloadBytes += payload.length * CHUNK_SIZE;
      const job = compressor.compress(raw, level);
      job.catch(() => { /* surfaced by writeOldest */ });
      queue.push({ entry, b, job });
      while (queue.length >= maxInflight) await writeOldest();
    };

    const tScan = Date.now();
    // Disk first: RAM pages that are the page cache of files written in the sandbox then become
    // copies of these chunks instead of a second literal.
    layer = Qcow2Reader.open(launch.diskLayer);
    const diskSize = layer.info.virtualSize;
    if (diskSize > LIMITS.diskBytes) throw new CloudletError('BadInput', `launch disk of ${diskSize} bytes is larger than ${LIMITS.diskBytes}`);
    // A child also lists every chunk its parent changed that it puts back (not in its own layer,
    // or rewritten to the base's bytes): the walk covers both layers' chunks.
    const own = layer.allocatedChunkKinds();
    const diskChunks: ArrayLike<number> = parentLayer ? mergeAscending(own.chunks, parentLayer.allocatedChunks().filter((i) => i * CHUNK_SIZE < diskSize)) : own.chunks;
    const diskBuilder = new SegmentBuilder('disk', emit);
    const chunk = Buffer.alloc(CHUNK_SIZE);
    const layerData = new SpanReader(layer.fileDescriptor, layer.fileSize(), launch.diskLayer);
    for (let i = 0, k = 0, runEnd = 0; i < diskChunks.length; i++) {
      if ((i & 1023) === 0) { throwIfCancelled(opts.signal); progress({ phase: 'scan-disk', done: i * CHUNK_SIZE, total: diskChunks.length * CHUNK_SIZE }); }
      const idx = diskChunks[i];
      while (k < own.chunks.length && own.chunks[k] < idx) k++;
      const mine = k < own.chunks.length && own.chunks[k] === idx;
      let data: Buffer, digest: Buffer;
      if (mine && own.zero[k]) {
        // A chunk the layer maps as zero clusters (what fstrim leaves) reads as zeros: no read, no hash.
        data = ZERO_CHUNK; digest = ZERO_DIGEST;
      } else {
        // A data cluster's chunk is read with the chunks after it that lie right after it in the file.
        const at = mine ? own.host[k] : -1;
        if (at >= 0 && k >= runEnd) {
          runEnd = k + 1;
          while (runEnd - k < layerData.maxChunks && runEnd < own.chunks.length && own.chunks[runEnd] === idx + (runEnd - k) && own.host[runEnd] === at + (runEnd - k) * CHUNK_SIZE) runEnd++;
        }
        const view = at >= 0 ? layerData.chunk(at, runEnd - k) : undefined;
        if (at >= 0 && !view) throw new CloudletError('Corrupt', `${launch.diskLayer}: data cluster at ${at} is past the end of the file`);
        data = view ?? layer.readChunk(idx, chunk, baseDiskFd);
        digest = hash('sha256', data, 'buffer');
      }
      const bd = encoder.baseDigest('disk', idx);
      if (bd && bd.equals(digest)) continue; // rewritten with the same bytes
      await addChunk(encoder, diskBuilder, breakdown.disk, 'disk', idx, data, digest);
    }
    await diskBuilder.flush();
    layer.close(); layer = undefined;
    progress({ phase: 'scan-disk', done: diskChunks.length * CHUNK_SIZE, total: diskChunks.length * CHUNK_SIZE });

    const ramFd = fs.openSync(launch.ramFile, 'r'); fds.push(ramFd);
    const ramBuilder = new SegmentBuilder('ram', emit);
    // Every page hashed on the worker threads in parallel; only changed pages are read again here.
    throwIfCancelled(opts.signal);
    progress({ phase: 'scan-ram', done: 0, total: ramSize });
    const launchRamDigests = await compressor.hashChunks(launch.ramFile, ramSize);
    const pages = ramSize / CHUNK_SIZE;
    const changed: number[] = [];
    for (let idx = 0; idx < pages; idx++) {
      const at = idx * 32;
      if (ramDigests.compare(launchRamDigests, at, at + 32, at, at + 32) !== 0) changed.push(idx);
    }
    // Changed pages are read in spans: a page with the changed pages after it up to maxChunks away.
    const launchRam = new SpanReader(ramFd, ramSize, launch.ramFile);
    for (let j = 0, next = 0; j < changed.length; j++) {
      const idx = changed[j];
      if ((j & 1023) === 0) { throwIfCancelled(opts.signal); progress({ phase: 'scan-ram', done: idx * CHUNK_SIZE, total: ramSize }); }
      if (next <= j) { next = j + 1; while (next < changed.length && changed[next] - idx < launchRam.maxChunks) next++; }
      const page = launchRam.chunk(idx * CHUNK_SIZE, changed[next - 1] - idx + 1)!;
      await addChunk(encoder, ramBuilder, breakdown.ram, 'ram', idx, page, launchRamDigests.subarray(idx * 32, idx * 32 + 32));
    }
    await ramBuilder.flush();
    progress({ phase: 'scan-ram', done: ramSize, total: ramSize });
    const scanMs = Date.now() - tScan;

    throwIfCancelled(opts.signal);
    progress({ phase: 'compress', message: 'waiting for the last segments' });
    // The device state goes in whole, as its own segment.
    // One small segment needed before anything else at resume: worth zstd's strongest setting
    // (about 0.1 s for a typical 0.7 MB state).
    const ds = await compressor.compress(deviceState, Math.max(level, DEVICE_STATE_LEVEL));
    const dsEntry: SegmentEntry = { digest: ds.digest, kind: 'device-state', size: ds.data.length, rawSize: deviceState.length, rawDigest: ds.rawDigest };
    while (queue.length) await writeOldest();
    fs.writeSync(segFd, ds.data);
    segments.push(dsEntry);

    const manifest: OverlayManifest = {
      format: FORMAT_NAME, version: FORMAT_VERSION, baseId: base.baseId, chunkSize: CHUNK_SIZE,
      ram: { size: ramSize }, disk: { size: diskSize }, base: { ramSize: baseRamSize, diskSize: baseDiskSize },
      compression: { algorithm: 'zstd', level }, vmConfig: launch.vmConfig, segments,
      breakdown: { ...breakdown, deviceStateBytes: deviceState.length },
      ...(parent ? { parent: { id: parent.overlayId, depth: parent.depth + 1 } } : {}),
    };
    // Two segments with the same bytes would share a name; the format lists each name once.
    dedupeSegmentNames(manifest);
    const manifestBytes = Buffer.from(canonicalJson(manifest), 'utf8');
    const overlayId = overlayIdOf(manifest, manifestBytes);
    throwIfCancelled(opts.signal);
    progress({ phase: 'write', message: 'writing the overlay file' });
    const outFd = fs.openSync(outTmp, 'w'); fds.push(outFd);
    fs.writeSync(outFd, encodeContainerHeader(manifestBytes));
    fs.writeSync(outFd, manifestBytes);
    fs.closeSync(segFd); fds.splice(fds.indexOf(segFd), 1);
    appendFile(outFd, segFile);
    fs.fsyncSync(outFd);
    const bytes = fs.fstatSync(outFd).size;
    const finalPath = opts.outFile ?? path.join(destDir, `${overlayId}.overlay`);
    fs.renameSync(outTmp, finalPath);
    return { overlayId, path: finalPath, manifest: JSON.parse(manifestBytes.toString('utf8')), bytes, timings: { scanMs, totalMs: Date.now() - t0 } };
  } finally {
    layer?.close();
    parentLayer?.close();
    for (const fd of fds) { try { fs.closeSync(fd); } catch { /* already closed */ } }
    fs.rmSync(segFile, { force: true });
    fs.rmSync(outTmp, { force: true });
    if (!opts.compressor) await compressor.close();
  }
}

async function addChunk(encoder: ChunkEncoder, builder: SegmentBuilder, b: TargetBreakdown, target: Target, index: number, data: Buffer, digest: Buffer): Promise<void> {
  const e = encoder.encode(target, index, data, digest);
  b.chunks++;
  b.encodings[ENCODING_NAMES[e.encoding]]++;
  if (e.encoding === Encoding.Self) b.selfFrom[e.refTarget]++;
  await builder.add({ encoding: e.encoding, index, ref: e.ref, refTarget: e.refTarget }, e.payload);
}

/** The union of two ascending lists of chunk indices, ascending. */
export function mergeAscending(a: ArrayLike<number>, b: ArrayLike<number>): number[] {
  const out: number[] = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i++] : b[j++];
    if (out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

function appendFile(outFd: number, src: string): void {
  const fd = fs.openSync(src, 'r');
  try {
    const buf = Buffer.alloc(READ_BLOCK);
    for (let pos = 0; ;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      fs.writeSync(outFd, buf, 0, n);
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Identical segments (same records and payload) cannot happen within one image because chunk
 * indices differ, but stay defensive: a repeated name would make two manifest entries ambiguous.
 */
function dedupeSegmentNames(m: OverlayManifest): void {
  const seen = new Set<string>();
  for (const s of m.segments) {
    if (seen.has(s.digest)) throw new CloudletError('Internal', `two segments compressed to the same bytes (${s.digest})`);
    seen.add(s.digest);
  }
}
