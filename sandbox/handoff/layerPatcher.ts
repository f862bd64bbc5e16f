/**
 * Changes a few chunks of a qcow2 layer written by Qcow2Writer (cluster size 4096, 16-bit
 * refcounts) in place: a chunk that already has a data cluster is overwritten there; a new chunk
 * gets a data cluster (and if needed an L2 table or a refcount block) appended at the end of the
 * file; a zeroed chunk gets the zero flag (keeping its cluster, as a preallocated zero cluster). So
 * a handoff round that brings a disk chunk the layer did not hold costs that chunk, not a rewrite
 * of the whole layer (the destination rebuilt the Debian guest's 230 MB layer in the paused round:
 * 17 s at load 18). Anything outside that layout (another cluster size, a refcount table that
 * would have to grow) throws, and the caller rebuilds the layer instead.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';

const CLUSTER = 4096;
const L2_ENTRIES = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK = CLUSTER / 2;
const COPIED = 0x80000000; // high word of an L1/L2 entry: refcount is exactly 1
const ZERO_FLAG = 1;
const OFFSET_HI = 0x00ffffff, OFFSET_LO = 0xfffffe00;

function offsetOf(buf: Buffer, at: number): number {
  return (buf.readUInt32BE(at) & OFFSET_HI) * 2 ** 32 + ((buf.readUInt32BE(at + 4) & OFFSET_LO) >>> 0);
}
function entry(off: number, zero = false): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE((Math.floor(off / 2 ** 32) | (off ? COPIED : 0)) >>> 0, 0);
  b.writeUInt32BE(((off >>> 0) | (zero ? ZERO_FLAG : 0)) >>> 0, 4);
  return b;
}

/** The layer's layout is one the patcher does not handle: the caller rewrites the layer instead. */
export class LayoutNotHandled extends CloudletError {
  constructor(what: string) { super('Internal', `layer patcher: ${what}`); }
}

export class LayerPatcher {
  private readonly fd: number;
  private readonly l1Offset: number;
  private readonly l1Entries: number;
  private readonly rtOffset: number;
  private readonly rtEntries: number;
  private end: number;

  constructor(path: string) {
    this.fd = fs.openSync(path, 'r+');
    try {
      const h = Buffer.alloc(112);
      fs.readSync(this.fd, h, 0, h.length, 0);
      if (h.readUInt32BE(0) !== 0x514649fb || h.readUInt32BE(4) !== 3) throw new LayoutNotHandled('not a qcow2 v3 file');
      if (h.readUInt32BE(20) !== 12) throw new LayoutNotHandled(`cluster bits ${h.readUInt32BE(20)}, only 12 is handled`);
      if (h.readUInt32BE(96) !== 4) throw new LayoutNotHandled('only 16-bit refcounts are handled');
      if (h.readUInt32BE(60) !== 0) throw new LayoutNotHandled('the layer has snapshots');
      this.l1Entries = h.readUInt32BE(36);
      this.l1Offset = h.readUInt32BE(40) * 2 ** 32 + h.readUInt32BE(44);
      this.rtOffset = h.readUInt32BE(48) * 2 ** 32 + h.readUInt32BE(52);
      this.rtEntries = (h.readUInt32BE(56) * CLUSTER) / 8;
      this.end = Math.ceil(fs.fstatSync(this.fd).size / CLUSTER) * CLUSTER;
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }

  /** Writes `data` as chunk `chunk` (4096 bytes) or, without data, marks it zero; returns the data cluster's offset (-1: zero, no cluster). */
  put(chunk: number, data: Buffer | undefined): number {
    const t = Math.floor(chunk / L2_ENTRIES);
    if (t >= this.l1Entries) throw new LayoutNotHandled(`chunk ${chunk} is outside the layer`);
    let l2 = offsetOf(this.read(this.l1Offset + t * 8, 8), 0);
    if (!l2) {
      l2 = this.allocate(Buffer.alloc(CLUSTER));
      this.write(this.l1Offset + t * 8, entry(l2));
    }
    const at = l2 + (chunk % L2_ENTRIES) * 8;
    let off = offsetOf(this.read(at, 8), 0);
    if (!data) {
      this.write(at, entry(off, true));
      return -1;
    }
    if (off) this.write(off, data);
    else off = this.allocate(data);
    this.write(at, entry(off));
    return off;
  }

  close(): void { fs.closeSync(this.fd); }

  /** A new cluster at the end of the file holding `data`, with refcount 1. */
  private allocate(data: Buffer): number {
    const off = this.end;
    this.end += CLUSTER;
    this.write(off, data);
    this.setRefcount(off / CLUSTER);
    return off;
  }

  private setRefcount(cluster: number): void {
    const b = Math.floor(cluster / REFCOUNTS_PER_BLOCK);
    if (b >= this.rtEntries) throw new LayoutNotHandled('the refcount table would have to grow');
    let block = offsetOf(this.read(this.rtOffset + b * 8, 8), 0);
    if (!block) {
      // A new refcount block, at the end: it counts itself when it falls in its own range.
      block = this.end;
      this.end += CLUSTER;
      const rb = Buffer.alloc(CLUSTER);
      const self = block / CLUSTER;
      if (Math.floor(self / REFCOUNTS_PER_BLOCK) === b) rb.writeUInt16BE(1, (self % REFCOUNTS_PER_BLOCK) * 2);
      else this.setRefcount(self);
      this.write(block, rb);
      const e = Buffer.alloc(8);
      e.writeUInt32BE(Math.floor(block / 2 ** 32), 0);
      e.writeUInt32BE(block >>> 0, 4);
      this.write(this.rtOffset + b * 8, e);
    }
    const two = Buffer.alloc(2);
    two.writeUInt16BE(1);
    this.write(block + (cluster % REFCOUNTS_PER_BLOCK) * 2, two);
  }

  private read(pos: number, n: number): Buffer {
    const b = Buffer.alloc(n);
    if (fs.readSync(this.fd, b, 0, n, pos) !== n) b.fill(0); // past the end: nothing allocated there
    return b;
  }

  private write(pos: number, b: Buffer): void { fs.writeSync(this.fd, b, 0, b.length, pos); }
}
