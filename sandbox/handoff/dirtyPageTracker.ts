/**
 * What the destination holds, per 4 KiB chunk of one image: a SHA-256 (DirtyPageTracker, for the
 * disk: only allocated chunks are ever read) or a byte copy (ShadowPageTracker, for RAM: comparing
 * bytes is several times faster than hashing every page, which shortens the paused round). It starts
 * as the base's digest list (the destination starts from its copy of the base), and every chunk
 * sent replaces its entry with the digest of the very bytes that were encoded, so "changed since
 * the last round" is exactly "differs from what the destination has", whatever the guest did
 * while a round was being read.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from '../overlay/format';
import { ZERO_DIGEST } from '../overlay/chunkEncoder';
import { ParallelPageCompare } from './parallelCompare';

const READ_BLOCK = 8 << 20;
const PAGE = CHUNK_SIZE; // module-local: read per page (an import is a getter under tsx)
const SPAN = 64 << 10;
const SHADOW_BLOCK = 1 << 20;
const ZERO_PAGE = Buffer.alloc(CHUNK_SIZE);

/** A copy of the bytes the destination holds: a page compare (memcmp) instead of a SHA-256 per page. */
export class ShadowPageTracker implements PageCopy {
  private readonly held: Buffer;
  private readonly pool?: ParallelPageCompare;
  /** How the last scanFile compared: 'workers' (ParallelPageCompare) or 'in-thread' (fallback). */
  lastScan: { method: 'workers' | 'in-thread'; fallbackReason?: string } = { method: 'in-thread' };

  /**
   * `initial` is what the destination starts from (the base RAM file), read whole. With `workers`
   * > 0 the copy lives in shared memory and scans run on that many worker threads (started now);
   * if they fail, scans fall back to the in-thread compare.
   */
  constructor(initial: string | undefined, readonly chunks: number, o: { workers?: number } = {}) {
    const workers = o.workers ?? 0;
    this.held = workers > 0 ? Buffer.from(new SharedArrayBuffer(chunks * CHUNK_SIZE)) : Buffer.alloc(chunks * CHUNK_SIZE);
    if (workers > 0) {
      try { this.pool = new ParallelPageCompare(this.held.buffer as SharedArrayBuffer, workers); } catch (e) { this.lastScan = { method: 'in-thread', fallbackReason: String(e) }; }
    }
    if (initial === undefined) return; // load() fills it
    const fd = fs.openSync(initial, 'r');
    try { for (let off = 0; off < this.held.length;) { const n = fs.readSync(fd, this.held, off, this.held.length - off, off); if (n === 0) break; off += n; } } finally { fs.closeSync(fd); }
  }

  /**
   * The same, reading `initial` in READ_BLOCK pieces off the event loop: a 1 GiB base RAM read in
   * one synchronous call kept the handoff's source silent (no heartbeats) long enough under load
   * for the destination to drop the session.
   */
  static async load(initial: string, chunks: number, o: { workers?: number; digests?: Buffer } = {}): Promise<ShadowPageTracker> {
    const t = new ShadowPageTracker(undefined, chunks, o);
    try { await t.loadBase(initial, { digests: o.digests }); } catch (e) { await t.close(); throw e; }
    return t;
  }

  /**
   * Fills the copy from `initial` (the base RAM) off the event loop, except the pages `skip` marks
   * (1 = written by someone else meanwhile: the launch round's pages, decoded into the copy while
   * this runs; never read over, not even through a gap). Reads go a few at a time (libuv's pool).
   */
  async loadBase(initial: string, o: { digests?: Buffer; skip?: Uint8Array } = {}): Promise<void> {
    const fh = await fs.promises.open(initial, 'r');
    try {
      const pieces: Array<[number, number]> = [];
      for (const [from, to] of dataRuns(this.held.length, o.digests, o.skip)) {
        for (let off = from; off < to; off += READ_BLOCK) pieces.push([off, Math.min(to, off + READ_BLOCK)]);
      }
      const readPiece = async ([from, to]: [number, number]) => {
        for (let off = from; off < to;) {
          const { bytesRead } = await fh.read(this.held, off, to - off, off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
      };
      let next = 0;
      const reader = async () => { while (next < pieces.length) await readPiece(pieces[next++]); };
      await Promise.all([reader(), reader()]);
    } finally { await fh.close(); }
  }

  /** Records that the destination holds `data` as page `index` (a round sent without a compare: launchRound.ts). */
  hold(index: number, data: Buffer): void {
    if (index >= this.chunks) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
    data.copy(this.held, index * PAGE, 0, PAGE);
  }

  /** What the destination holds as page `index`, copied into `out`. */
  page(index: number, out: Buffer): Buffer {
    if (index >= this.chunks) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
    this.held.copy(out, 0, index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE);
    return out;
  }

  /** Whether the destination holds zeros as page `index`. */
  zero(index: number): boolean {
    const at = index * PAGE;
    return this.held.compare(ZERO_PAGE, 0, PAGE, at, at + PAGE) === 0;
  }

  /** Whether `data` differs from what the destination holds (nothing recorded). */
  differs(index: number, data: Buffer): boolean {
    if (index >= this.chunks) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
    const at = index * CHUNK_SIZE;
    return this.held.compare(data, 0, CHUNK_SIZE, at, at + CHUNK_SIZE) !== 0;
  }

  /** The SHA-256 of `data` if it differs from what the destination holds (nothing recorded), else undefined. */
  differing(index: number, data: Buffer): Buffer | undefined {
    return this.differs(index, data) ? createHash('sha256').update(data).digest() : undefined;
  }

  /** Digest of `data` if it differs from what the destination holds (and records it as sent); `digest`: its SHA-256 if known. */
  check(index: number, data: Buffer, digest?: Buffer): Buffer | undefined {
    if (index >= this.chunks) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
    const at = index * CHUNK_SIZE;
    if (this.held.compare(data, 0, CHUNK_SIZE, at, at + CHUNK_SIZE) === 0) return undefined;
    data.copy(this.held, at, 0, CHUNK_SIZE);
    return digest ?? createHash('sha256').update(data).digest();
  }

  /**
   * Reads the image in large blocks and visits each page that differs from the copy. Compares
   * 64 KiB spans first (one native memcmp each) and looks at single pages only inside a span that
   * differs: an idle guest changes few spans, so the paused round costs little more than the read.
   */
  async scanFile(file: string, visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
    if (this.pool && !this.pool.unusable) {
      let lists: Int32Array[] | undefined;
      try {
        const size = Math.min(fs.statSync(file).size, this.chunks * CHUNK_SIZE);
        lists = await this.pool.changedPages(file, size, CHUNK_SIZE);
      } catch (e) {
        // Nothing was recorded as sent yet: the in-thread compare below does the whole scan.
        this.lastScan = { method: 'in-thread', fallbackReason: String(e instanceof Error ? e.message : e) };
      }
      if (lists) {
        this.lastScan = { method: 'workers' };
        return this.visitListed(file, lists, visit, signal);
      }
    } else if (this.pool) {
      this.lastScan = { method: 'in-thread', fallbackReason: this.pool.unusable };
    }
    return this.scanInThread(file, visit, signal);
  }

  /**
   * Reads each page a worker found different (again: what is encoded is what is recorded as sent,
   * even if a running guest changed it since) and visits it if it still differs.
   */
  private async visitListed(file: string, lists: Int32Array[], visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
    const fd = fs.openSync(file, 'r');
    const buf = Buffer.allocUnsafe(64 * CHUNK_SIZE);
    let changed = 0;
    try {
      for (const list of lists) {
        for (let k = 0; k < list.length;) {
          if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
          // Runs of consecutive pages in one read.
          let e = k + 1;
          while (e < list.length && e - k < 64 && list[e] === list[e - 1] + 1) e++;
          const first = list[k], count = e - k;
          let n = 0;
          while (n < count * CHUNK_SIZE) { const r = fs.readSync(fd, buf, n, count * CHUNK_SIZE - n, first * CHUNK_SIZE + n); if (r === 0) break; n += r; }
          for (let j = 0; j + CHUNK_SIZE <= n; j += CHUNK_SIZE) {
            const page = Buffer.from(buf.subarray(j, j + CHUNK_SIZE));
            const d = this.check(first + j / CHUNK_SIZE, page);
            if (d) { changed++; await visit(first + j / CHUNK_SIZE, page, d); }
          }
          k = e;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return changed;
  }

  /** Stops the compare workers (if any). */
  close(): Promise<void> { return this.pool?.close() ?? Promise.resolve(); }

  private async scanInThread(file: string, visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
    const fd = fs.openSync(file, 'r');
    // 1 MiB reads: the block is still in the CPU cache when it is compared (measured here: about
    // 30 ms for 128 MiB against 35-50 ms with 8-32 MiB reads; reads on libuv's pool were slower).
    const block = Buffer.allocUnsafe(SHADOW_BLOCK);
    const size = Math.min(fs.fstatSync(fd).size, this.chunks * CHUNK_SIZE);
    let changed = 0;
    try {
      for (let off = 0; off < size; off += SHADOW_BLOCK) {
        if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
        // Let sockets run now and then (the device state streams in while the paused RAM is read).
        if (off && off % READ_BLOCK === 0) await new Promise((r) => setImmediate(r));
        let n = 0;
        const want = Math.min(SHADOW_BLOCK, size - off);
        while (n < want) { const r = fs.readSync(fd, block, n, want - n, off + n); if (r === 0) break; n += r; }
        const whole = n - (n % CHUNK_SIZE);
        for (let span = 0; span < whole; span += SPAN) {
          const end = Math.min(span + SPAN, whole);
          if (this.held.compare(block, span, end, off + span, off + end) === 0) continue;
          for (let p = span; p < end; p += CHUNK_SIZE) {
            const at = off + p;
            if (this.held.compare(block, p, p + CHUNK_SIZE, at, at + CHUNK_SIZE) === 0) continue;
            const page = block.subarray(p, p + CHUNK_SIZE);
            page.copy(this.held, at);
            changed++;
            await visit(at / CHUNK_SIZE, page, createHash('sha256').update(page).digest());
          }
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return changed;
  }
}

/**
 * Byte ranges of an image to read: all of it, or with its chunk digests only the runs that are not
 * zero pages (the copy starts zeroed; a base RAM is mostly free memory: ~70% of the Debian base's
 * 1 GiB), gaps under 256 KiB read through. Pages `skip` marks are never inside a range.
 */
export function dataRuns(size: number, digests?: Buffer, skip?: Uint8Array): Array<[number, number]> {
  if (!digests && !skip) return [[0, size]];
  const runs: Array<[number, number]> = [];
  const total = Math.floor(size / CHUNK_SIZE);
  const pages = digests ? Math.min(total, digests.length / 32) : total;
  const GAP = 64;
  // A gap may be read through only if no skipped page lies in it.
  let skippedSinceRun = false;
  for (let i = 0; i < pages; i++) {
    if (skip && skip[i]) { skippedSinceRun = true; continue; }
    if (digests && ZERO_DIGEST.equals(digests.subarray(i * 32, i * 32 + 32))) continue;
    const last = runs[runs.length - 1];
    if (last && !skippedSinceRun && i * CHUNK_SIZE - last[1] <= GAP * CHUNK_SIZE) last[1] = (i + 1) * CHUNK_SIZE;
    else runs.push([i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE]);
    skippedSinceRun = false;
  }
  // Past the digests (never, for a base's own list): read as is, around skipped pages.
  if (!skip) { if (pages * CHUNK_SIZE < size) runs.push([pages * CHUNK_SIZE, size]); return runs; }
  for (let i = pages; i < total; i++) {
    if (skip[i]) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === i * CHUNK_SIZE) last[1] += CHUNK_SIZE; else runs.push([i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE]);
  }
  return runs;
}

/** What QEMU's migration stream is compared with (MigrationTracker): a ShadowPageTracker or a DirtyPageTracker. */
export interface PageCopy {
  readonly chunks: number;
  /** Whether `data` differs from what the destination holds as page `index` (nothing recorded). */
  differs(index: number, data: Buffer): boolean;
  /**
   * The SHA-256 of `data` if it differs (nothing recorded), else undefined: taken when a page arrives
   * (MigrationTracker), so that the paused round does not hash the pages found before the pause again.
   */
  differing(index: number, data: Buffer): Buffer | undefined;
  /** Digest of `data` if it differs (and records it as sent); `digest`: the SHA-256 of `data` when already known. */
  check(index: number, data: Buffer, digest?: Buffer): Buffer | undefined;
}

/** A page's bytes were asked of a copy that keeps only digests (DirtyPageTracker.page). */
export class PageBytesNotKept extends Error {}

/**
 * What the destination holds as one SHA-256 per page (8 MB for 1 GiB of RAM), starting as the base's
 * digest list. The source's copy after a launch round (handoffSender.ts): a byte copy (ShadowPageTracker)
 * is a fresh 1 GiB buffer whose first touch of each page is a page fault, 25-37 us each on the hosts
 * measured, ~170k of them to fill it (the base's data pages and round 0's), against ~6 us to hash a
 * page; and the base RAM need not be read at all. Zero pages are recognized without hashing.
 */
export class DirtyPageTracker implements PageCopy {
  private readonly held: Buffer;
  lastScan: { method: 'workers' | 'in-thread'; fallbackReason?: string } = { method: 'in-thread' };

  constructor(baseDigests: Buffer, readonly chunks: number) {
    this.held = Buffer.alloc(chunks * 32);
    baseDigests.copy(this.held, 0, 0, Math.min(baseDigests.length, this.held.length));
  }

  /** Digest of `data` if it differs from what the destination holds (and records it as sent); `digest`: the SHA-256 of `data` when already known. */
  check(index: number, data: Buffer, digest?: Buffer): Buffer | undefined {
    if (digest) this.inside(index); else digest = this.digestOf(index, data);
    if (this.held.compare(digest, 0, 32, index * 32, index * 32 + 32) === 0) return undefined;
    digest.copy(this.held, index * 32);
    return digest === ZERO_DIGEST ? Buffer.from(digest) : digest;
  }

  differs(index: number, data: Buffer): boolean {
    return this.differing(index, data) !== undefined;
  }

  differing(index: number, data: Buffer): Buffer | undefined {
    const digest = this.digestOf(index, data);
    return this.held.compare(digest, 0, 32, index * 32, index * 32 + 32) === 0 ? undefined : digest;
  }

  /** Records that the destination holds `data` as page `index` (a round sent without a compare: launchRound.ts). */
  hold(index: number, data: Buffer): void {
    this.digestOf(index, data).copy(this.held, index * 32);
  }

  /** Records that the destination holds the page of SHA-256 `digest` as page `index` (a base page in round 0). */
  holdDigest(index: number, digest: Buffer): void {
    this.inside(index);
    if (digest.length !== 32) throw new CloudletError('Internal', `a page digest is 32 bytes, not ${digest.length}`);
    digest.copy(this.held, index * 32);
  }

  /** Records that page `index` holds what page `ref` holds (a copy in round 0). */
  holdCopy(index: number, ref: number): void {
    this.inside(index); this.inside(ref);
    this.held.copy(this.held, index * 32, ref * 32, ref * 32 + 32);
  }

  /** The SHA-256 the destination holds as page `index` (a view: copy it to keep it). */
  digest(index: number): Buffer {
    this.inside(index);
    return this.held.subarray(index * 32, index * 32 + 32);
  }

  /** Every page's digest, in page order (a view; launchDigests.ts writes it to the VM's folder). */
  digests(): Buffer { return this.held; }

  /** Only digests are kept: the bytes of a page are not known here. */
  page(index: number, _out: Buffer): Buffer {
    throw new PageBytesNotKept(`the bytes of RAM page ${index} are not kept (a digest copy)`);
  }

  /** Whether the destination holds zeros as page `index`. */
  zero(index: number): boolean {
    this.inside(index);
    return ZERO_DIGEST.equals(this.held.subarray(index * 32, index * 32 + 32));
  }

  close(): Promise<void> { return Promise.resolve(); }

  private digestOf(index: number, data: Buffer): Buffer {
    this.inside(index);
    // A zero page (most of a guest's RAM) by a memcmp, not a hash.
    return data.length === CHUNK_SIZE && data.equals(ZERO_PAGE) ? ZERO_DIGEST : createHash('sha256').update(data).digest();
  }

  private inside(index: number): void {
    if (index >= this.chunks || index < 0) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
  }

  scanFile(file: string, visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
    return scanFile(this, file, visit, signal);
  }
}

/** Reads a whole image file in large blocks and visits each changed page. */
async function scanFile(t: { chunks: number; check(i: number, d: Buffer): Buffer | undefined }, file: string,
  visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
  const fd = fs.openSync(file, 'r');
  const block = Buffer.alloc(READ_BLOCK);
  let changed = 0;
  try {
    const size = Math.min(fs.fstatSync(fd).size, t.chunks * CHUNK_SIZE);
    for (let off = 0; off < size; off += READ_BLOCK) {
      if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      const n = fs.readSync(fd, block, 0, Math.min(READ_BLOCK, size - off), off);
      for (let p = 0; p + CHUNK_SIZE <= n; p += CHUNK_SIZE) {
        const page = block.subarray(p, p + CHUNK_SIZE);
        const idx = (off + p) / CHUNK_SIZE;
        const d = t.check(idx, page);
        if (d) { changed++; await visit(idx, page, d); }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return changed;
}
