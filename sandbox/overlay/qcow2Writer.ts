/**
 * Writes a qcow2 v3 layer over a raw backing file (the base disk) holding a known set of 4 KiB
 * chunks: cluster_size 4096, 16-bit refcounts, every table placed up front so data can be written
 * in any order (segments decode in parallel) and the metadata last.
 *
 * Layout, in clusters: header | refcount table | refcount blocks | L1 | L2 tables | data.
 * Data cluster k holds the k-th listed chunk (ascending). A chunk finished with markZero() gets the
 * zero flag instead and its data cluster stays a hole with refcount 0 (free space, not a leak), so
 * `qemu-img check` is clean.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from './format';

const CLUSTER = 4096;
const L2_ENTRIES = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK = CLUSTER / 2; // refcount_order 4
const HEADER_LENGTH = 112;
const COPIED = 0x80000000; // bit 63 in the high word: refcount is exactly 1

export interface Qcow2WriterOptions {
  virtualSize: number;
  backingFile: string;       // absolute path written into the header
  backingFormat?: string;    // default "raw"
  chunks: ArrayLike<number>; // ascending chunk indices this layer will hold
}

function writeU64(buf: Buffer, off: number, value: number, hiFlags = 0): void {
  buf.writeUInt32BE((Math.floor(value / 2 ** 32) | hiFlags) >>> 0, off);
  buf.writeUInt32BE(value >>> 0, off + 4);
}

export class Qcow2Writer {
  private readonly fd: number;
  private readonly opts: Qcow2WriterOptions;
  private readonly chunks: Uint32Array;
  private readonly state: Uint8Array; // 0 pending, 1 data written, 2 zero
  private readonly l1Entries: number;
  private readonly l2Tables: number[];  // L1 index of each L2 table, ascending
  private readonly layout: { rtStart: number; rtClusters: number; rbStart: number; rbClusters: number; l1Start: number; l1Clusters: number; l2Start: number; dataStart: number; total: number };
  private closed = false;

  private constructor(fd: number, opts: Qcow2WriterOptions) {
    this.fd = fd;
    this.opts = opts;
    this.chunks = Uint32Array.from(opts.chunks);
    for (let i = 1; i < this.chunks.length; i++) {
      if (this.chunks[i] <= this.chunks[i - 1]) throw new CloudletError('BadInput', 'qcow2 writer: chunk list must be strictly ascending');
    }
    const chunkLimit = Math.ceil(opts.virtualSize / CHUNK_SIZE);
    if (this.chunks.length && this.chunks[this.chunks.length - 1] >= chunkLimit) {
      throw new CloudletError('BadInput', `qcow2 writer: chunk ${this.chunks[this.chunks.length - 1]} is outside a ${opts.virtualSize}-byte disk`);
    }
    this.state = new Uint8Array(this.chunks.length);
    this.l1Entries = Math.max(1, Math.ceil(opts.virtualSize / (CLUSTER * L2_ENTRIES)));
    const tables: number[] = [];
    for (const c of this.chunks) {
      const t = Math.floor(c / L2_ENTRIES);
      if (tables[tables.length - 1] !== t) tables.push(t);
    }
    this.l2Tables = tables;
    const l1Clusters = Math.ceil((this.l1Entries * 8) / CLUSTER);
    // Refcount blocks must cover every cluster including themselves and the table: iterate to a fixed point.
    const fixed = 1 + l1Clusters + tables.length + this.chunks.length;
    let rb = 1, rt = 1;
    for (;;) {
      const total = fixed + rb + rt;
      const needRb = Math.ceil(total / REFCOUNTS_PER_BLOCK);
      const needRt = Math.ceil((needRb * 8) / CLUSTER);
      if (needRb === rb && needRt === rt) break;
      rb = needRb; rt = needRt;
    }
    const rtStart = 1, rbStart = rtStart + rt, l1Start = rbStart + rb, l2Start = l1Start + l1Clusters;
    const dataStart = l2Start + tables.length;
    this.layout = { rtStart, rtClusters: rt, rbStart, rbClusters: rb, l1Start, l1Clusters, l2Start, dataStart, total: dataStart + this.chunks.length };
  }

  /** Creates (truncates) the file. Write every listed chunk with writeChunk or markZero, then finish(). */
  static create(path: string, opts: Qcow2WriterOptions): Qcow2Writer {
    const fd = fs.openSync(path, 'w+');
    try {
      return new Qcow2Writer(fd, opts);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /**
   * Writes into an existing small qcow2 (the empty layer a prepared launch's QEMU has open, inactive)
   * without truncating it: data clusters go past its end, and finish() rewrites every cluster before
   * them. Undefined when the file reaches into the data area (then create() it once QEMU opened it).
   */
  static reuse(path: string, opts: Qcow2WriterOptions): Qcow2Writer | undefined {
    const fd = fs.openSync(path, 'r+');
    try {
      const w = new Qcow2Writer(fd, opts);
      if (fs.fstatSync(fd).size <= w.layout.dataStart * CLUSTER) return w;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    fs.closeSync(fd);
    return undefined;
  }

  /** Position of `chunk` in the listed chunks, or -1. */
  positionOf(chunk: number): number {
    let lo = 0, hi = this.chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.chunks[mid];
      if (v === chunk) return mid;
      if (v < chunk) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  private need(chunk: number): number {
    const k = this.positionOf(chunk);
    if (k < 0) throw new CloudletError('Corrupt', `qcow2 writer: disk chunk ${chunk} was not in the planned chunk list`);
    return k;
  }

  /** Host file offset of the data cluster of a listed chunk. */
  hostOffsetOf(chunk: number): number {
    return (this.layout.dataStart + this.need(chunk)) * CLUSTER;
  }

  writeChunk(chunk: number, data: Uint8Array): void {
    if (data.length !== CHUNK_SIZE) throw new CloudletError('Internal', 'qcow2 writer: chunk data must be 4096 bytes');
    const k = this.need(chunk);
    fs.writeSync(this.fd, data, 0, CHUNK_SIZE, (this.layout.dataStart + k) * CLUSTER);
    this.state[k] = 1;
  }

  /**
   * Marks a listed chunk as holding data and returns the file offset of its data cluster, for a
   * caller that writes the 4096 bytes itself through `fileDescriptor` (runs of chunks in one writev:
   * listed chunks next to each other have their data clusters next to each other).
   */
  claimChunk(chunk: number): number {
    const k = this.need(chunk);
    this.state[k] = 1;
    return (this.layout.dataStart + k) * CLUSTER;
  }

  get fileDescriptor(): number {
    return this.fd;
  }

  /** Reads back a chunk written earlier (self copies during synthesis). */
  readChunk(chunk: number, out: Buffer): Buffer {
    const k = this.need(chunk);
    if (this.state[k] !== 1) throw new CloudletError('Corrupt', `qcow2 writer: disk chunk ${chunk} has no data yet`);
    fs.readSync(this.fd, out, 0, CHUNK_SIZE, (this.layout.dataStart + k) * CLUSTER);
    return out;
  }

  isWritten(chunk: number): boolean {
    const k = this.positionOf(chunk);
    return k >= 0 && this.state[k] === 1;
  }

  markZero(chunk: number): void {
    this.state[this.need(chunk)] = 2;
  }

  /** Writes header, refcounts, L1 and L2; every listed chunk must have been written or zeroed. */
  finish(opts: { sync?: boolean } = {}): void {
    const { layout, chunks, state } = this;
    const pending = state.indexOf(0);
    if (pending >= 0) throw new CloudletError('Internal', `qcow2 writer: disk chunk ${chunks[pending]} was never written`);
    const refcounts = new Uint16Array(layout.rbClusters * REFCOUNTS_PER_BLOCK);
    refcounts.fill(1, 0, layout.dataStart);
    for (let k = 0; k < chunks.length; k++) if (state[k] === 1) refcounts[layout.dataStart + k] = 1;

    const header = Buffer.alloc(CLUSTER);
    header.writeUInt32BE(0x514649fb, 0);
    header.writeUInt32BE(3, 4);
    header.writeUInt32BE(12, 20);                      // cluster_bits
    writeU64(header, 24, this.opts.virtualSize);
    header.writeUInt32BE(0, 32);                       // no encryption
    header.writeUInt32BE(this.l1Entries, 36);
    writeU64(header, 40, layout.l1Start * CLUSTER);
    writeU64(header, 48, layout.rtStart * CLUSTER);
    header.writeUInt32BE(layout.rtClusters, 56);
    // nb_snapshots, snapshots_offset, features: zero
    header.writeUInt32BE(4, 96);                       // refcount_order: 16-bit
    header.writeUInt32BE(HEADER_LENGTH, 100);
    header[104] = 0;                                   // compression_type zlib (no compressed clusters anyway)
    let p = HEADER_LENGTH;
    const fmt = Buffer.from(this.opts.backingFormat ?? 'raw', 'utf8');
    header.writeUInt32BE(0xe2792aca, p); header.writeUInt32BE(fmt.length, p + 4); fmt.copy(header, p + 8);
    p += 8 + Math.ceil(fmt.length / 8) * 8;
    p += 8; // end-of-extensions marker (type 0, length 0)
    const name = Buffer.from(this.opts.backingFile, 'utf8');
    if (p + name.length > CLUSTER || name.length > 1023) throw new CloudletError('BadInput', `backing file path is too long: ${this.opts.backingFile}`);
    name.copy(header, p);
    writeU64(header, 8, p);
    header.writeUInt32BE(name.length, 16);

    const rt = Buffer.alloc(layout.rtClusters * CLUSTER);
    for (let b = 0; b < layout.rbClusters; b++) writeU64(rt, b * 8, (layout.rbStart + b) * CLUSTER);
    const rb = Buffer.alloc(layout.rbClusters * CLUSTER);
    for (let i = 0; i < layout.total; i++) if (refcounts[i]) rb.writeUInt16BE(refcounts[i], i * 2);

    const l1 = Buffer.alloc(layout.l1Clusters * CLUSTER);
    const l2 = Buffer.alloc(this.l2Tables.length * CLUSTER);
    this.l2Tables.forEach((t, n) => writeU64(l1, t * 8, (layout.l2Start + n) * CLUSTER, COPIED));
    let table = -1, n = -1;
    for (let k = 0; k < chunks.length; k++) {
      const t = Math.floor(chunks[k] / L2_ENTRIES);
      if (t !== table) { table = t; n++; }
      const at = n * CLUSTER + (chunks[k] % L2_ENTRIES) * 8;
      if (state[k] === 1) writeU64(l2, at, (layout.dataStart + k) * CLUSTER, COPIED);
      else writeU64(l2, at, 1); // zero flag, no host cluster: reads as zeros, hides the backing file
    }
    fs.writeSync(this.fd, header, 0, CLUSTER, 0);
    fs.writeSync(this.fd, rt, 0, rt.length, layout.rtStart * CLUSTER);
    fs.writeSync(this.fd, rb, 0, rb.length, layout.rbStart * CLUSTER);
    fs.writeSync(this.fd, l1, 0, l1.length, layout.l1Start * CLUSTER);
    if (l2.length) fs.writeSync(this.fd, l2, 0, l2.length, layout.l2Start * CLUSTER);
    // The file ends after the last cluster in use; holes left by zero chunks stay sparse.
    let end = layout.dataStart;
    for (let k = chunks.length - 1; k >= 0; k--) if (state[k] === 1) { end = layout.dataStart + k + 1; break; }
    fs.ftruncateSync(this.fd, end * CLUSTER);
    if (opts.sync !== false) fs.fsyncSync(this.fd);
    this.close();
  }

  close(): void {
    if (!this.closed) { this.closed = true; fs.closeSync(this.fd); }
  }
}
