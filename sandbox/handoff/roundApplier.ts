/**
 * The destination's side of the rounds: applies each round's segments onto a RAM file (a copy of
 * the base RAM at first) and a sparse disk delta, and at the end writes the qcow2 layer over the
 * base disk. Segments are checked exactly as synthesis checks them (fetchSegment: size, SHA-256,
 * declared and actual decompressed size; a round with xz units: decodeUnitStream and each segment's
 * content name, in roundReader.ts) and their records against the header's chunk list.
 * With a prepared launch (the destination QEMU already started, paused, -incoming defer) the RAM
 * file is that QEMU's own (mapped shared: writes land in guest RAM) and the qcow2 layer is the one
 * it holds inactive: syncDiskLayer() patches it in place after each round that touched the disk
 * (LayerPatcher: clusters overwritten, new ones appended), or writes it whole (first round, or a
 * layout the patcher does not handle).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { onDiskFull } from '../common/hostErrors';
import { cloneFile } from '../qemu/files';
import { fetchSegment } from '../overlay/apply';
import { CHUNK_SIZE, SegmentEntry, Target } from '../overlay/format';
import { Qcow2Writer } from '../overlay/qcow2Writer';
import { LayerPatcher, LayoutNotHandled } from './layerPatcher';
import { RunWriter } from '../overlay/runWriter';
import { decodeChunkRecords, newRoundChunks, RoundCopies, type ChunkSink, type RoundChunks } from './chunkRecords';
import type { SegmentCompressor } from '../overlay/segmentCompressor';

const DISK_DATA = 1, DISK_ZERO = 2;
// Module-local copies: the imported bindings are getters when run from TypeScript (tsx), and these
// are read per chunk (measured: ~2 s of getter calls applying a 116k-chunk round at load 18).
const CHUNK = CHUNK_SIZE;
const ZERO_PAGE = Buffer.alloc(CHUNK_SIZE);
/** Compressed plus decompressed bytes of the segments being decompressed at once. */
const IN_FLIGHT_BYTES = 96 << 20;

export class RoundApplier {
  readonly ramFile: string;
  readonly diskDelta: string;
  readonly deviceState: string;
  private ramFd = -1;
  private diskFd = -1;
  private baseFds: Record<Target, number> = { ram: -1, disk: -1 };
  private readonly disk = new Map<number, number>();
  private readonly limits: Record<Target, number>;
  private hasState = false;
  /** Where each chunk sits in the qcow2 layer as last written (host offset, or -1: zero flag). */
  private layerMap?: Map<number, number>;
  private readonly dirtySinceSync = new Set<number>();
  /** Consecutive chunks written with one pwritev per run (a write per 4 KiB chunk was most of a launch round's apply). */
  private runs?: Record<Target, RunWriter>;
  /** What the applier is doing, for a disk-full error. */
  private stage = 'receiving a handoff';

  private constructor(readonly dir: string, private readonly base: { ram: string; disk: string }, readonly diskLayer: string, ramFile?: string) {
    this.ramFile = ramFile ?? path.join(dir, 'ram.raw');
    this.diskDelta = path.join(dir, 'disk.delta');
    this.deviceState = path.join(dir, 'state.bin');
    this.limits = { ram: fs.statSync(base.ram).size / CHUNK_SIZE, disk: Math.ceil(fs.statSync(base.disk).size / CHUNK_SIZE) };
  }

  /** `into`: the RAM file and qcow2 layer of a prepared launch (the RAM file already a copy of the base RAM). */
  static async create(dir: string, base: { ram: string; disk: string }, into?: { ramFile: string; diskLayer: string }): Promise<RoundApplier> {
    fs.mkdirSync(dir, { recursive: true });
    const a = new RoundApplier(dir, base, into?.diskLayer ?? path.join(dir, 'disk.qcow2'), into?.ramFile);
    if (!into) await cloneFile(base.ram, a.ramFile);
    a.ramFd = fs.openSync(a.ramFile, 'r+');
    a.diskFd = fs.openSync(a.diskDelta, 'w+');
    a.runs = { ram: new RunWriter(a.ramFd), disk: new RunWriter(a.diskFd) };
    a.baseFds = { ram: fs.openSync(base.ram, 'r'), disk: fs.openSync(base.disk, 'r') };
    return a;
  }

  get diskSize(): number { return fs.fstatSync(this.baseFds.disk).size; }

  /**
   * Applies one round as its segments arrive (decompressed on the compressor's workers, a bounded
   * number and size at once, applied in arrival order); copies of chunks of this round once that
   * chunk is applied, those that refer forward last. The entries were checked by checkRoundHeader: runs inside the images,
   * ascending, counts bounded.
   */
  async apply(segments: AsyncIterable<{ entry: SegmentEntry; data: Buffer; decoded?: boolean }>, compressor: Pick<SegmentCompressor, 'decompressNamed' | 'threads'>, roundNo = 0,
    o: { diskSegments?: number; firstSyncAllowed?: () => boolean } = {}): Promise<{ chunks: number; syncDiskInRoundMs?: number }> {
    this.stage = `applying handoff round ${roundNo}`;
    const round = newRoundChunks();
    // Pending writes land before a chunk is read back.
    const copies = new RoundCopies(round, (c) => this.sink.put(c.target, c.index, this.readCurrent(c.refTarget, c.ref, round.scratch), false), () => this.flushRuns());
    const queue: Array<{ entry: SegmentEntry; raw: Promise<Buffer>; bytes: number }> = [];
    let inFlight = 0;
    // `diskSegments` (from the round's header): once the last disk segment is applied the layer is
    // brought up to date while the rest (RAM) still arrives, not after the round's last byte (on a
    // slow link that write was all waiting time). Copies at the round's end patch it again.
    let diskLeft = o.diskSegments ?? -1;
    let syncDiskInRoundMs: number | undefined;
    const applyOldest = async () => {
      const q = queue.shift()!;
      inFlight -= q.bytes;
      this.applySegment(q.entry, await q.raw, round);
      // Copies of chunks already here now, not after the round's last byte (and before the disk sync below).
      copies.afterSegment(q.entry);
      // The first sync rewrites the whole layer: only once `firstSyncAllowed` (else at the round's end).
      if (q.entry.target === 'disk' && --diskLeft === 0 && (this.layerWritten || (o.firstSyncAllowed?.() ?? true))) {
        const t = Date.now();
        this.syncDiskLayer();
        syncDiskInRoundMs = Date.now() - t;
      }
    };
    try {
      for await (const { entry, data, decoded } of segments) {
        const bytes = entry.size + entry.rawSize;
        while (queue.length && (queue.length > compressor.threads || inFlight + bytes > IN_FLIGHT_BYTES)) await applyOldest();
        // A segment of a round's units comes decoded and checked (roundReader's unitSegments).
        const raw = decoded ? Promise.resolve(data) : fetchSegment(entry, { getSegment: async () => data }, compressor);
        raw.catch(() => undefined); // surfaced when applied
        queue.push({ entry, raw, bytes });
        inFlight += bytes;
      }
      while (queue.length) await applyOldest();
    } finally {
      queue.length = 0;
    }
    try {
      copies.finish();
    } finally {
      this.flushRuns();
    }
    return { chunks: round.chunks, ...(syncDiskInRoundMs !== undefined ? { syncDiskInRoundMs } : {}) };
  }

  private applySegment(entry: SegmentEntry, raw: Buffer, round: RoundChunks): void {
    if (entry.kind === 'device-state') { onDiskFull(this.deviceState, this.stage, () => fs.writeFileSync(this.deviceState, raw)); this.hasState = true; return; }
    const target = entry.target;
    if (target !== 'ram' && target !== 'disk') throw new CloudletError('BadInput', `segment ${entry.digest} has no target image`);
    try {
      decodeChunkRecords({ ...entry, target }, raw, this.limits, this.sink, round);
    } finally {
      this.flushRuns();
    }
  }

  /** Where decoded chunks go: the base images read as the destination starts from them, writes in runs. */
  private readonly sink: ChunkSink = {
    base: (target, index, out) => this.readBase(target, index, out),
    put: (target, index, data, stable) => this.put(target, index, data, stable),
  };

  /** Chunks of the VM's RAM and disk: what a round's runs must stay inside. */
  get chunkLimits(): Record<Target, number> { return { ...this.limits }; }

  get stateReceived(): boolean { return this.hasState; }

  /** Whether the qcow2 layer was written by a sync yet (the first one rewrites the whole file). */
  get layerWritten(): boolean { return this.layerMap !== undefined; }

  /**
   * Brings the qcow2 layer up to date with every disk chunk received: nothing to do if no round
   * touched the disk since the last sync; else patched in place (LayerPatcher), or rewritten whole
   * when there is no layer yet or the patcher cannot (same file, same inode either way: a QEMU
   * holding it inactive re-reads it on activation).
   */
  syncDiskLayer(): { mode: 'none' | 'patched' | 'rebuilt'; chunks: number } {
    return onDiskFull(this.diskLayer, `${this.stage}: writing the disk layer`, () => this.syncLayer());
  }

  private syncLayer(): { mode: 'none' | 'patched' | 'rebuilt'; chunks: number } {
    this.flushRuns(); // apply() already did; the disk delta is read below
    const dirty = [...this.dirtySinceSync];
    this.dirtySinceSync.clear();
    if (this.layerMap && !dirty.length) return { mode: 'none', chunks: 0 };
    const buf = Buffer.alloc(CHUNK);
    if (this.layerMap) {
      // In place: overwritten where the chunk has its cluster, new clusters appended (LayerPatcher);
      // a layout it does not handle falls through to the rewrite below.
      try {
        const p = new LayerPatcher(this.diskLayer);
        try {
          for (const c of dirty) {
            const zero = this.disk.get(c) === DISK_ZERO;
            if (!zero) fs.readSync(this.diskFd, buf, 0, CHUNK, c * CHUNK);
            this.layerMap.set(c, p.put(c, zero ? undefined : buf));
          }
        } finally { p.close(); }
        return { mode: 'patched', chunks: dirty.length };
      } catch (e) {
        if (!(e instanceof LayoutNotHandled)) throw e; // disk full, I/O errors: not a layout question
      }
    }
    const chunks = [...this.disk.keys()].sort((a, b) => a - b);
    const map = new Map<number, number>();
    const w = Qcow2Writer.create(this.diskLayer, { virtualSize: this.diskSize, backingFile: path.resolve(this.base.disk), backingFormat: 'raw', chunks });
    try {
      for (const c of chunks) {
        if (this.disk.get(c) === DISK_ZERO) { w.markZero(c); map.set(c, -1); } else {
          fs.readSync(this.diskFd, buf, 0, CHUNK, c * CHUNK);
          w.writeChunk(c, buf);
          map.set(c, w.hostOffsetOf(c));
        }
      }
      w.finish();
    } catch (e) { w.close(); this.layerMap = undefined; throw e; }
    this.layerMap = map;
    return { mode: 'rebuilt', chunks: chunks.length };
  }

  /** Writes the qcow2 layer over the base disk holding every disk chunk received; returns its path. */
  buildDiskLayer(): string {
    if (!this.hasState) throw new CloudletError('BadInput', 'the handoff never sent the device state (no final round)');
    this.syncDiskLayer();
    return this.diskLayer;
  }

  close(): void {
    for (const fd of [this.ramFd, this.diskFd, this.baseFds.ram, this.baseFds.disk]) { if (fd >= 0) try { fs.closeSync(fd); } catch { /* closed */ } }
    this.ramFd = this.diskFd = -1;
    this.baseFds = { ram: -1, disk: -1 };
    this.runs = undefined;
  }

  /** `stable`: `data` stays as it is until the next flushRuns() (else it is copied if it waits). */
  private put(target: Target, index: number, data: Buffer | undefined, stable = false): void {
    if (target === 'disk') {
      this.dirtySinceSync.add(index);
      this.disk.set(index, data ? DISK_DATA : DISK_ZERO);
      if (!data) return;
    }
    const runs = this.runs;
    if (!runs) throw new CloudletError('Conflict', 'the handoff session ended while a round was being applied');
    // A write that ends a run writes that run out: a full disk can show here.
    onDiskFull(target === 'ram' ? this.ramFile : this.diskDelta, this.stage, () => runs[target].write(index * CHUNK, data ?? ZERO_PAGE, !stable && data !== undefined));
  }

  /** Writes the pending runs (before any chunk is read back, and at the end of a segment). */
  private flushRuns(): void {
    if (!this.runs) return;
    onDiskFull(this.ramFile, this.stage, () => this.runs!.ram.flush());
    onDiskFull(this.diskDelta, this.stage, () => this.runs!.disk.flush());
  }

  private readBase(target: Target, index: number, out: Buffer): Buffer {
    if (index >= this.limits[target]) throw new CloudletError('Corrupt', `round refers to base ${target} chunk ${index}, outside the base`);
    out.fill(0);
    fs.readSync(this.baseFds[target], out, 0, CHUNK, index * CHUNK);
    return out;
  }

  private readCurrent(target: Target, index: number, out: Buffer): Buffer {
    out.fill(0);
    if (target === 'ram') fs.readSync(this.ramFd, out, 0, CHUNK, index * CHUNK);
    else if (this.disk.get(index) === DISK_DATA) fs.readSync(this.diskFd, out, 0, CHUNK, index * CHUNK);
    return out;
  }
}
