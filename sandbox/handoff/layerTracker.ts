/**
 * The handoff's tracker for the VM's disk layer (its qcow2 over the base disk): which 4 KiB chunks
 * differ from what the destination holds. Two things keep its cost away from the paused round:
 *   - a stamp of the layer file (mtime, ctime, size in ns) taken before each scan: a file whose
 *     stamp did not move since the previous scan began was not written since (QEMU writes the layer
 *     with pwrite, which updates both times), so it is not read again. The stamp is kept only when
 *     the file's last change is older than STAMP_AGE_MS at that moment: a write right after it then
 *     gets a later time even with coarse (tick-grained) file timestamps.
 *   - a scan reads runs of clusters (up to 1 MiB per read) and compares bytes with a copy of what
 *     was sent (or with the base disk for a chunk never sent), hashing only chunks that differ;
 *     reading every chunk alone and hashing each took 8-9 s for the 230 MB layer of the Debian guest.
 * Layers whose clusters are not whole chunks fall back to reading chunk by chunk (same result).
 * A live scan sees only the mapping QEMU has flushed to the file: with cache=writeback the L2 entry of a
 * cluster the guest allocated stays in QEMU's metadata cache until a flush, so a write made before the
 * handoff's dirty bitmap existed may be in neither the scans nor the bitmap. remappedChunks() finds
 * those once the VM is paused (QEMU flushed): the entries that differ from the last scan's tables.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from '../overlay/format';
import { Qcow2Reader, type Qcow2Tables } from '../overlay/qcow2Reader';
import { ZERO_CHUNK, ZERO_DIGEST } from '../overlay/chunkEncoder';

const STAMP_AGE_MS = 50;
const RUN_BYTES = 1 << 20;

interface Stamp { mtimeNs: bigint; ctimeNs: bigint; size: bigint }

export class LayerTracker {
  /** What the destination holds for each chunk sent so far (others: the base disk's chunk). */
  private readonly sent = new Map<number, Buffer>();
  /**
   * Chunks the destination holds known only by their SHA-256 (round 0's state kept at synthesis,
   * launchDigests.ts): compared by hashing the layer's chunk; replaced by the bytes once sent again.
   */
  private readonly sentDigest = new Map<number, Buffer>();
  private stamp?: Stamp;
  /** The L2 tables the last complete scan mapped the layer by (undefined: no scan completed). */
  private scannedTables?: Qcow2Tables;
  /** Whether the last scan() skipped reading because the file had not changed. */
  lastSkipped = false;

  /**
   * `baseDigests`: SHA-256 per chunk of the base disk (the base's disk.digests). With them, a run of
   * zero clusters (what the guest discarded: most of a layer after fstrim) is checked without
   * reading the base: a never-sent chunk there changed exactly when its base digest is not zero's.
   */
  constructor(private readonly layerPath: string, private readonly baseFd: number, private readonly baseDigests?: Buffer) {}

  /**
   * Records that the destination holds `data` as chunk `index` (a round sent without a scan:
   * launchRound.ts). `kept`: data never changes afterwards, so it is kept as is, not copied (a copy
   * of each of round 0's ~24k chunks was a fresh page each: a page fault apiece).
   */
  hold(index: number, data: Buffer, kept = false): void {
    this.sentDigest.delete(index);
    // Zeros are not copied (a crafted overlay of zero records over a zero base would otherwise make
    // the source hold 4 KiB per record: the whole virtual disk for a few hundred KB of overlay).
    if (isZero(data)) {
      if (this.baseDigests && this.baseChunkIsZero(index)) this.sent.delete(index); // the base's own bytes
      else this.sent.set(index, ZERO_CHUNK);
      return;
    }
    this.sent.set(index, kept ? data : Buffer.from(data));
  }

  /**
   * Records that the destination holds the chunk of SHA-256 `digest` as chunk `index` (round 0's
   * state computed ahead: launchDigests.ts). Only before any scan, on a tracker holding no bytes yet.
   */
  holdDigest(index: number, digest: Buffer): void {
    if (digest.length !== 32) throw new CloudletError('Internal', `a chunk digest is 32 bytes, not ${digest.length}`);
    this.sent.delete(index);
    this.sentDigest.set(index, digest);
  }

  /** What the destination holds as chunk `index`, copied into `out` (the base disk's chunk if never sent). */
  held(index: number, out: Buffer): Buffer {
    const s = this.sent.get(index);
    if (s) { s.copy(out); return out; }
    if (this.sentDigest.has(index)) throw new CloudletError('Internal', `disk chunk ${index}: only its digest is kept`);
    return readAt(this.baseFd, index * CHUNK_SIZE, out, true);
  }

  /** Whether `data` differs from what the destination holds as chunk `index` (`base`: its base chunk, read on demand). */
  private differs(index: number, data: Buffer, base: () => Buffer): boolean {
    const s = this.sent.get(index);
    if (s) return !s.equals(data);
    const d = this.sentDigest.get(index);
    if (d) return !d.equals(isZero(data) ? ZERO_DIGEST : createHash('sha256').update(data).digest());
    return !base().equals(data);
  }

  /** Whether the destination holds zeros as chunk `index`. */
  private heldZero(index: number): boolean {
    const s = this.sent.get(index);
    if (s) return isZero(s);
    const d = this.sentDigest.get(index);
    if (d) return ZERO_DIGEST.equals(d);
    return this.baseChunkIsZero(index);
  }

  private record(index: number, copy: Buffer): void {
    this.sentDigest.delete(index);
    this.sent.set(index, copy);
  }

  /**
   * Visits each chunk of the layer that differs from what the destination holds, records it as
   * sent. `consistent`: the VM is paused and its layer flushed (else a table caught mid-update is
   * skipped for now: the final scan reads it flushed).
   */
  async scan(visit: (index: number, data: Buffer, digest: Buffer) => Promise<void>, consistent: boolean): Promise<number> {
    const before = this.stampNow();
    if (this.stamp && before && sameStamp(this.stamp, before)) { this.lastSkipped = true; return 0; }
    this.lastSkipped = false;
    // Kept only if the file's last change is old enough that any later write moves its times.
    this.stamp = before && Date.now() * 1_000_000 - Number(maxBig(before.mtimeNs, before.ctimeNs)) > STAMP_AGE_MS * 1_000_000 ? before : undefined;
    let layer: Qcow2Reader | undefined;
    let fd: number | undefined;
    try {
      layer = Qcow2Reader.open(this.layerPath, { keepTables: true });
      fd = fs.openSync(this.layerPath, 'r');
      const changed = await this.scanLayer(layer, fd, visit);
      this.scannedTables = layer.tables;
      return changed;
    } catch (e) {
      this.stamp = undefined;
      if (consistent) throw e;
      return 0;
    } finally {
      layer?.close();
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /**
   * The chunks whose L2 entry changed since the last complete scan (all the layer maps, when none
   * completed), ascending. Call with the VM paused and its layer flushed: added to the dirty bitmap's
   * chunks they cover the writes QEMU had not flushed to the file's mapping when the bitmap began.
   */
  remappedChunks(): number[] {
    return Qcow2Reader.changedChunks(this.layerPath, this.scannedTables);
  }

  /**
   * Visits each of `chunks` (the ones written since the dirty log began; the VM paused, its layer
   * flushed) that differs from what the destination holds: O(written), not O(layer).
   */
  async scanChunks(chunks: number[], visit: (index: number, data: Buffer, digest: Buffer) => Promise<void>): Promise<number> {
    this.lastSkipped = false;
    this.stamp = undefined;
    // Only the L2 tables of these chunks: the whole mapping of a large layer took most of this scan.
    const layer = Qcow2Reader.open(this.layerPath, { chunks });
    try {
      const buf = Buffer.alloc(CHUNK_SIZE);
      let changed = 0;
      for (const idx of chunks) {
        if (idx * CHUNK_SIZE >= layer.info.virtualSize) throw new CloudletError('Internal', `disk chunk ${idx} is outside the disk`);
        layer.readChunk(idx, buf, this.baseFd);
        if (!this.differs(idx, buf, () => readAt(this.baseFd, idx * CHUNK_SIZE, Buffer.alloc(CHUNK_SIZE), true))) continue;
        const copy = Buffer.from(buf);
        this.record(idx, copy);
        changed++;
        await visit(idx, copy, createHash('sha256').update(copy).digest());
      }
      return changed;
    } finally {
      layer.close();
    }
  }

  private async scanLayer(layer: Qcow2Reader, fd: number, visit: (index: number, data: Buffer, digest: Buffer) => Promise<void>): Promise<number> {
    const cs = layer.info.clusterSize;
    let changed = 0;
    const send = async (index: number, data: Buffer) => {
      const copy = Buffer.from(data);
      this.record(index, copy);
      changed++;
      await visit(index, copy, createHash('sha256').update(copy).digest());
    };
    const check = async (index: number, data: Buffer, base: () => Buffer) => {
      if (this.differs(index, data, base)) await send(index, data);
    };
    if (cs % CHUNK_SIZE || layer.info.virtualSize % CHUNK_SIZE) {
      const buf = Buffer.alloc(CHUNK_SIZE);
      for (const idx of layer.allocatedChunks()) {
        layer.readChunk(idx, buf, this.baseFd);
        await check(idx, buf, () => readAt(this.baseFd, idx * CHUNK_SIZE, Buffer.alloc(CHUNK_SIZE)));
      }
      return changed;
    }
    const clusters = layer.clusters();
    const buf = Buffer.allocUnsafe(RUN_BYTES + cs);
    const baseBuf = Buffer.allocUnsafe(RUN_BYTES + cs);
    for (let i = 0; i < clusters.length;) {
      // A run: consecutive guest clusters stored consecutively (or all zero clusters), <= 1 MiB.
      const first = clusters[i];
      let j = i + 1;
      while (j < clusters.length && (j - i + 1) * cs <= RUN_BYTES && clusters[j].guestCluster === clusters[j - 1].guestCluster + 1
        && (first.hostOffset < 0 ? clusters[j].hostOffset < 0 : clusters[j].hostOffset === clusters[j - 1].hostOffset + cs)) j++;
      const bytes = (j - i) * cs;
      const guestOff = first.guestCluster * cs;
      if (first.hostOffset < 0 && this.baseDigests) {
        for (let k = 0; k < bytes; k += CHUNK_SIZE) {
          const index = (guestOff + k) / CHUNK_SIZE;
          if (!this.heldZero(index)) await send(index, ZERO_CHUNK);
        }
        i = j;
        continue;
      }
      if (first.hostOffset < 0) buf.fill(0, 0, bytes);
      else readAt(fd, first.hostOffset, buf.subarray(0, bytes));
      let baseRead = false;
      const base = (k: number) => () => {
        if (!baseRead) { readAt(this.baseFd, guestOff, baseBuf.subarray(0, bytes), true); baseRead = true; }
        return baseBuf.subarray(k, k + CHUNK_SIZE);
      };
      for (let k = 0; k < bytes; k += CHUNK_SIZE) await check((guestOff + k) / CHUNK_SIZE, buf.subarray(k, k + CHUNK_SIZE), base(k));
      i = j;
    }
    return changed;
  }

  /** Whether the base disk's chunk `index` is all zeros (its digest is zero's; past the base: zeros). */
  private baseChunkIsZero(index: number): boolean {
    const d = this.baseDigests!;
    if ((index + 1) * 32 > d.length) return true;
    return ZERO_DIGEST.equals(d.subarray(index * 32, index * 32 + 32));
  }

  private stampNow(): Stamp | undefined {
    try {
      const st = fs.statSync(this.layerPath, { bigint: true });
      return { mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, size: st.size };
    } catch { return undefined; }
  }
}

function isZero(b: Buffer): boolean { return b.equals(ZERO_CHUNK); }

function sameStamp(a: Stamp, b: Stamp): boolean { return a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.size === b.size; }
function maxBig(a: bigint, b: bigint): bigint { return a > b ? a : b; }

/** Reads exactly out.length bytes at `pos` (or up to the end of the file, zero-filled, if `short`). */
function readAt(fd: number, pos: number, out: Buffer, short = false): Buffer {
  let n = 0;
  while (n < out.length) {
    const r = fs.readSync(fd, out, n, out.length - n, pos + n);
    if (r === 0) break;
    n += r;
  }
  if (n < out.length) {
    if (!short) throw new CloudletError('Corrupt', `disk layer: data at ${pos} is past the end of the file (${n} of ${out.length} bytes)`);
    out.fill(0, n);
  }
  return out;
}
