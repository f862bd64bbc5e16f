/**
 * Reads the clusters a qcow2 layer allocates itself (not its backing file): enough to find and read
 * the 4 KiB chunks a sandbox wrote. Supports qcow2 v2 and v3, any cluster size, uncompressed
 * clusters and the v3 zero flag. Anything else (encryption, compressed clusters, extended L2
 * entries, external data files) is refused with a message naming the feature.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from './format';

const MAGIC = 0x514649fb; // "QFI\xfb"
const OFFSET_MASK_HI = 0x00ffffff; // host offset = bits 9..55
const OFFSET_MASK_LO = 0xfffffe00;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_DATA_FILE = 0x44415441;
const INCOMPAT_DIRTY = 1, INCOMPAT_CORRUPT = 2, INCOMPAT_DATA_FILE = 4, INCOMPAT_COMPRESSION = 8, INCOMPAT_EXTL2 = 16;

export interface Qcow2Info {
  version: number;
  clusterSize: number;
  virtualSize: number;
  backingFile?: string;
  backingFormat?: string;
}

/** One cluster the layer maps itself: its data at hostOffset, or zeros (hostOffset -1). */
export interface Qcow2Cluster { guestCluster: number; hostOffset: number }

/** The raw L2 tables of a layer (by L1 index; undefined: no table), to see later which entries changed. */
export interface Qcow2Tables { clusterSize: number; virtualSize: number; l2: (Buffer | undefined)[] }

function u64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32BE(off), lo = buf.readUInt32BE(off + 4);
  if (hi > 0x1fffff) throw new CloudletError('Corrupt', `qcow2 field at byte ${off} is larger than 2^53`);
  return hi * 2 ** 32 + lo;
}

export class Qcow2Reader {
  readonly info: Qcow2Info;
  private readonly fd: number;
  private readonly path: string;
  private readonly l1Offset: number;
  private readonly l1Size: number;
  // Allocated clusters, ascending by guest cluster; host offset -1 for zero clusters.
  private guestClusters = new Float64Array(0);
  private hostOffsets = new Float64Array(0);
  /** L1 indices whose L2 tables were loaded, when open() was given chunks (else all were). */
  private onlyTables?: Set<number>;
  /** The L2 tables as read, when open() was asked to keep them. */
  tables?: Qcow2Tables;

  private constructor(path: string, fd: number, info: Qcow2Info, l1Offset: number, l1Size: number) {
    this.path = path; this.fd = fd; this.info = info; this.l1Offset = l1Offset; this.l1Size = l1Size;
  }

  /**
   * Opens the file, checks the header and loads the L1/L2 mapping: all of it, or with `chunks` only
   * the L2 tables that map those 4 KiB chunks (a handoff's paused scan of a few written chunks of a
   * large layer); readChunk then refuses chunks outside those tables. `keepTables`: keep the raw L2
   * tables the mapping was read from (`tables`), for changedChunks().
   */
  static open(path: string, o: { chunks?: Iterable<number>; keepTables?: boolean } = {}): Qcow2Reader {
    const fd = fs.openSync(path, 'r');
    try {
      const r = Qcow2Reader.parseHeader(path, fd);
      if (o.chunks) {
        const perTable = r.info.clusterSize / 8 * r.info.clusterSize;
        r.onlyTables = new Set();
        for (const c of o.chunks) { r.onlyTables.add(Math.floor((c * CHUNK_SIZE) / perTable)); r.onlyTables.add(Math.floor((c * CHUNK_SIZE + CHUNK_SIZE - 1) / perTable)); }
      }
      if (o.keepTables) r.tables = { clusterSize: r.info.clusterSize, virtualSize: r.info.virtualSize, l2: [] };
      r.loadMapping();
      return r;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /**
   * The 4 KiB chunks (ascending) of the guest clusters whose L2 entry in the layer at `path` now
   * differs from `before` (undefined: every cluster the layer maps). Any change of an entry counts
   * (mapping, zero flag, or flags alone: reading such a chunk again is harmless). Reads the tables
   * into one buffer and compares as it goes: a few ms for a 4 GiB disk of 4 KiB clusters.
   */
  static changedChunks(path: string, before: Qcow2Tables | undefined): number[] {
    const fd = fs.openSync(path, 'r');
    try {
      const r = Qcow2Reader.parseHeader(path, fd);
      const cs = r.info.clusterSize, entries = cs / 8;
      if (before && (before.clusterSize !== cs || before.virtualSize !== r.info.virtualSize)) before = undefined;
      const totalClusters = Math.ceil(r.info.virtualSize / cs);
      const lastChunk = Math.ceil(r.info.virtualSize / CHUNK_SIZE) - 1;
      const out: number[] = [];
      const seen = new Set<number>();
      let unordered = false; // tables come in L1 order, so only the defensive pass below can add out of order
      const diff = (i: number, a: Buffer | undefined, b: Buffer | undefined) => {
        if (a && b && a.equals(b)) return;
        for (let j = 0; j < entries; j++) {
          const o = j * 8;
          if ((a ? a.readUInt32BE(o) : 0) === (b ? b.readUInt32BE(o) : 0) && (a ? a.readUInt32BE(o + 4) : 0) === (b ? b.readUInt32BE(o + 4) : 0)) continue;
          const g = i * entries + j;
          if (g >= totalClusters) break;
          const last = Math.min(Math.floor((g * cs + cs - 1) / CHUNK_SIZE), lastChunk);
          for (let c = Math.floor((g * cs) / CHUNK_SIZE); c <= last; c++) if (!out.length || c > out[out.length - 1]) out.push(c); else if (c < out[out.length - 1]) unordered = true;
        }
      };
      r.forEachTable((i, l2) => { seen.add(i); diff(i, before?.l2[i], l2); });
      // A table the earlier read had and the file no longer points to (QEMU never drops one: defensive).
      before?.l2.forEach((a, i) => { if (a && !seen.has(i)) diff(i, a, undefined); });
      if (!unordered) return out;
      out.sort((x, y) => x - y);
      return out.filter((c, k) => k === 0 || c !== out[k - 1]);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Calls `visit` with each L2 table (a buffer reused for the next one) and its L1 index. */
  private forEachTable(visit: (l1Index: number, l2: Buffer) => void): void {
    const { clusterSize } = this.info;
    const l1 = Buffer.alloc(this.l1Size * 8);
    fs.readSync(this.fd, l1, 0, l1.length, this.l1Offset);
    const l2 = Buffer.alloc(clusterSize);
    for (let i = 0; i < this.l1Size; i++) {
      const l2Offset = (l1.readUInt32BE(i * 8) & OFFSET_MASK_HI) * 2 ** 32 + (l1.readUInt32BE(i * 8 + 4) & OFFSET_MASK_LO);
      if (l2Offset === 0 || (this.onlyTables && !this.onlyTables.has(i))) continue;
      if (l2Offset % clusterSize) throw new CloudletError('Corrupt', `${this.path}: L2 table offset ${l2Offset} is not cluster aligned`);
      if (fs.readSync(this.fd, l2, 0, clusterSize, l2Offset) !== clusterSize) throw new CloudletError('Corrupt', `${this.path}: L2 table at ${l2Offset} is past the end of the file`);
      visit(i, l2);
    }
  }

  private static parseHeader(path: string, fd: number): Qcow2Reader {
    const refuse = (why: string) => new CloudletError('BadInput', `${path}: ${why}`);
    const fileSize = fs.fstatSync(fd).size;
    const h = Buffer.alloc(4096);
    fs.readSync(fd, h, 0, h.length, 0);
    if (fileSize < 72 || h.readUInt32BE(0) !== MAGIC) throw refuse('not a qcow2 image (bad magic)');
    const version = h.readUInt32BE(4);
    if (version !== 2 && version !== 3) throw refuse(`qcow2 version ${version} is not supported (2 or 3)`);
    const clusterBits = h.readUInt32BE(20);
    if (clusterBits < 9 || clusterBits > 21) throw refuse(`cluster_bits ${clusterBits} is outside 9..21`);
    const clusterSize = 2 ** clusterBits;
    const virtualSize = u64(h, 24);
    if (h.readUInt32BE(32) !== 0) throw refuse('encrypted qcow2 images are not supported');
    const l1Size = h.readUInt32BE(36);
    const l1Offset = u64(h, 40);
    const l2Entries = clusterSize / 8;
    if (l1Size < Math.ceil(virtualSize / (clusterSize * l2Entries))) throw new CloudletError('Corrupt', `${path}: L1 table of ${l1Size} entries cannot map ${virtualSize} bytes`);
    let headerLength = 72;
    if (version === 3) {
      const incompat = u64(h, 72);
      if (incompat & INCOMPAT_CORRUPT) throw new CloudletError('Corrupt', `${path}: the image is marked corrupt (run qemu-img check -r all)`);
      if (incompat & INCOMPAT_DATA_FILE) throw refuse('qcow2 images with an external data file are not supported');
      if (incompat & INCOMPAT_EXTL2) throw refuse('qcow2 images with extended L2 entries (subclusters) are not supported');
      const known = INCOMPAT_DIRTY | INCOMPAT_COMPRESSION;
      if (incompat & ~known) throw refuse(`unknown incompatible qcow2 features 0x${incompat.toString(16)}`);
      headerLength = h.readUInt32BE(100);
      if (headerLength < 104 || headerLength > 4096 - 8) throw refuse(`header_length ${headerLength} is not supported`);
    }
    const info: Qcow2Info = { version, clusterSize, virtualSize };
    // Header extensions (v3; v2 may have them too, right after the 72-byte header).
    let p = headerLength;
    while (p + 8 <= h.length) {
      const type = h.readUInt32BE(p), len = h.readUInt32BE(p + 4);
      if (type === 0) break;
      if (p + 8 + len > h.length) break;
      if (type === EXT_BACKING_FORMAT) info.backingFormat = h.toString('utf8', p + 8, p + 8 + len);
      if (type === EXT_DATA_FILE) throw refuse('qcow2 images with an external data file are not supported');
      p += 8 + Math.ceil(len / 8) * 8;
    }
    const bfOff = u64(h, 8), bfLen = h.readUInt32BE(16);
    if (bfOff && bfLen) {
      const b = Buffer.alloc(Math.min(bfLen, 1023));
      fs.readSync(fd, b, 0, b.length, bfOff);
      info.backingFile = b.toString('utf8');
    }
    return new Qcow2Reader(path, fd, info, l1Offset, l1Size);
  }

  private loadMapping(): void {
    const { clusterSize } = this.info;
    const l2Entries = clusterSize / 8;
    const totalClusters = Math.ceil(this.info.virtualSize / clusterSize);
    const guest: number[] = [];
    const host: number[] = [];
    this.forEachTable((i, l2) => {
      if (this.tables) this.tables.l2[i] = Buffer.from(l2);
      for (let j = 0; j < l2Entries; j++) {
        const hi = l2.readUInt32BE(j * 8), lo = l2.readUInt32BE(j * 8 + 4);
        if (hi === 0 && lo === 0) continue;
        const g = i * l2Entries + j;
        if (g >= totalClusters) continue;
        if (hi & 0x40000000) throw new CloudletError('BadInput', `${this.path}: compressed clusters are not supported (guest offset ${g * clusterSize}); convert with qemu-img convert -O qcow2 first`);
        const off = (hi & OFFSET_MASK_HI) * 2 ** 32 + (lo & OFFSET_MASK_LO);
        const zero = this.info.version === 3 && (lo & 1) === 1;
        if (zero) { guest.push(g); host.push(-1); continue; }
        if (off === 0) continue; // v2 "unallocated" (or v3 entry with only flags): falls through to the backing file
        if (off % clusterSize) throw new CloudletError('Corrupt', `${this.path}: data cluster offset ${off} is not cluster aligned`);
        guest.push(g); host.push(off);
      }
    });
    this.guestClusters = Float64Array.from(guest);
    this.hostOffsets = Float64Array.from(host);
  }

  /** Clusters this layer maps itself (data or zero), ascending. */
  clusters(): Qcow2Cluster[] {
    return Array.from(this.guestClusters, (g, i) => ({ guestCluster: g, hostOffset: this.hostOffsets[i] }));
  }

  /** Indices of the 4 KiB chunks that overlap a cluster this layer maps, ascending. */
  allocatedChunks(): number[] {
    const cs = this.info.clusterSize;
    const lastChunk = Math.ceil(this.info.virtualSize / CHUNK_SIZE) - 1;
    const out: number[] = [];
    for (const g of this.guestClusters) {
      const first = Math.floor((g * cs) / CHUNK_SIZE);
      const last = Math.min(Math.floor((g * cs + cs - 1) / CHUNK_SIZE), lastChunk);
      for (let c = Math.max(first, out.length ? out[out.length - 1] + 1 : 0); c <= last; c++) out.push(c);
    }
    return out;
  }

  /**
   * allocatedChunks() as a typed array, with for each chunk whether the layer maps all of it as
   * zero clusters (`zero`: it reads as zeros without any read or hash; after fstrim most of a layer
   * is zero clusters: 825 k of the realistic bench pair's 849 k chunks), and where its bytes are in
   * this file when one data cluster holds all of them (`host`, else -1: read it with readChunk).
   */
  allocatedChunkKinds(): { chunks: Uint32Array; zero: Uint8Array; host: Float64Array } {
    const cs = this.info.clusterSize, virtualSize = this.info.virtualSize;
    const lastChunk = Math.ceil(virtualSize / CHUNK_SIZE) - 1;
    const perChunk = cs < CHUNK_SIZE ? CHUNK_SIZE / cs : 1; // clusters per chunk (cluster sizes are powers of two)
    const cap = cs >= CHUNK_SIZE ? this.guestClusters.length * (cs / CHUNK_SIZE) : this.guestClusters.length;
    let chunks = new Uint32Array(cap);
    let zero = new Uint8Array(cap);
    let host = new Float64Array(cap);
    let n = 0;
    let zeroParts = 0; // zero clusters seen in the current chunk (clusters smaller than a chunk)
    // Clusters of a chunk that lie inside the virtual disk (the last chunk may be cut short).
    const clustersIn = (c: number) => Math.min(perChunk, Math.ceil((virtualSize - c * CHUNK_SIZE) / cs));
    for (let k = 0; k < this.guestClusters.length; k++) {
      const g = this.guestClusters[k], h = this.hostOffsets[k];
      const isZero = h < 0;
      const first = Math.floor((g * cs) / CHUNK_SIZE);
      const last = Math.min(Math.floor((g * cs + cs - 1) / CHUNK_SIZE), lastChunk);
      for (let c = first; c <= last; c++) {
        if (n && chunks[n - 1] === c) { if (isZero) zeroParts++; continue; }
        if (n && perChunk > 1) zero[n - 1] = zeroParts === clustersIn(chunks[n - 1]) ? 1 : 0;
        chunks[n] = c; zero[n] = isZero ? 1 : 0; zeroParts = isZero ? 1 : 0;
        host[n] = !isZero && perChunk === 1 && (c + 1) * CHUNK_SIZE <= virtualSize ? h + (c * CHUNK_SIZE - g * cs) : -1;
        n++;
      }
    }
    if (n && perChunk > 1) zero[n - 1] = zeroParts === clustersIn(chunks[n - 1]) ? 1 : 0;
    if (n < cap) { chunks = chunks.slice(0, n); zero = zero.slice(0, n); host = host.slice(0, n); }
    return { chunks, zero, host };
  }

  /** This file's size in bytes (data clusters must lie inside it). */
  fileSize(): number {
    return fs.fstatSync(this.fd).size;
  }

  /** The open file descriptor (for reading data clusters in spans; owned by this reader). */
  get fileDescriptor(): number {
    return this.fd;
  }

  private find(guestCluster: number): number {
    let lo = 0, hi = this.guestClusters.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.guestClusters[mid];
      if (v === guestCluster) return mid;
      if (v < guestCluster) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  /**
   * Reads guest chunk `index` as the VM sees it: this layer's clusters, zeros for zero clusters, and
   * for parts the layer does not map (clusters smaller than 4 KiB) the backing file `backingFd`.
   */
  readChunk(index: number, out: Buffer = Buffer.alloc(CHUNK_SIZE), backingFd?: number): Buffer {
    const cs = this.info.clusterSize;
    let pos = index * CHUNK_SIZE;
    const end = Math.min(pos + CHUNK_SIZE, this.info.virtualSize);
    out.fill(0);
    while (pos < end) {
      const g = Math.floor(pos / cs);
      if (this.onlyTables && !this.onlyTables.has(Math.floor(g / (cs / 8)))) throw new CloudletError('Internal', `${this.path}: chunk ${index} is outside the L2 tables loaded`);
      const inCluster = pos - g * cs;
      const n = Math.min(cs - inCluster, end - pos);
      const at = pos - index * CHUNK_SIZE;
      const k = this.find(g);
      if (k >= 0 && this.hostOffsets[k] >= 0) {
        const got = fs.readSync(this.fd, out, at, n, this.hostOffsets[k] + inCluster);
        if (got !== n) throw new CloudletError('Corrupt', `${this.path}: data cluster at ${this.hostOffsets[k]} is past the end of the file`);
      } else if (k < 0 && backingFd !== undefined) {
        fs.readSync(backingFd, out, at, n, pos);
      }
      pos += n;
    }
    return out;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
