/**
 * What the destination holds once round 0 (the launch overlay, launchRound.ts) is applied, computed
 * once per synthesized VM and kept in its folder (launch.digests), so a handoff's source does not
 * decode round 0 while the handoff waits (1-3 s of zstd + SHA-256 on the build profile, 5-7 s of xz
 * on the wire profile, before QEMU's first pass can start): one SHA-256 per RAM page and per disk
 * chunk round 0 stores. Computed after the VM runs, in a child process at nice 19 (never on
 * synthesis's path; killed when the VM goes), written atomically with a trailing SHA-256 of the whole
 * file: a torn or foreign file is refused with its reason and the handoff decodes round 0 as before.
 *
 * File: "CLLDIG01" | u32 header length | header JSON {overlayId, baseId, pages, diskChunks} |
 * pages x 32 B RAM digests | diskChunks x (u32 index, 32 B digest), ascending | SHA-256 of all before.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, describeError } from '../common/errors';
import { readWhole } from '../common/readWhole';
import { ZERO_CHUNK, ZERO_DIGEST } from '../overlay/chunkEncoder';
import { CHUNK_SIZE, type Target } from '../overlay/format';
import { SegmentCompressor } from '../overlay/segmentCompressor';
import type { LaunchDigestsJob } from '../sandboxes/launchDigestsJob';
import { DirtyPageTracker } from './dirtyPageTracker';
import { decodeLaunchRound, readLaunchRound, type LaunchRound } from './launchRound';

const MAGIC = Buffer.from('CLLDIG01');

/** The launch state as digests: RAM (pages x 32 B, every page) and the disk chunks round 0 stores. */
export interface LaunchDigests {
  ram: Buffer;
  /** Disk chunk index -> SHA-256 of what the destination holds there (chunks not listed: the base's). */
  disk: Map<number, Buffer>;
}

interface Header { overlayId: string; baseId: string; pages: number; diskChunks: number }

/**
 * Decodes round 0 into digests only (nothing held as bytes): RAM pages into a DirtyPageTracker over
 * the base's RAM digests, disk chunks into a map; base records and copies by digest (no read, no hash).
 */
export async function computeLaunchDigests(r: LaunchRound, base: { ram: string; disk: string }, baseDigests: Record<Target, Buffer>, pages: number,
  compressor: Pick<SegmentCompressor, 'decompressNamed' | 'threads'>, signal?: AbortSignal): Promise<LaunchDigests> {
  const ram = new DirtyPageTracker(baseDigests.ram, pages);
  const disk = new Map<number, Buffer>();
  const baseDigest = (t: Target, ref: number): Buffer => {
    const d = baseDigests[t];
    if (ref < 0) throw new CloudletError('Corrupt', `round 0 refers to base ${t} chunk ${ref}`);
    // Past the end of the base disk reads zeros (BaseChunks); a RAM ref outside the base is refused.
    if ((ref + 1) * 32 > d.length) {
      if (t === 'disk') return ZERO_DIGEST;
      throw new CloudletError('Corrupt', `round 0 refers to base ram chunk ${ref}, outside the base`);
    }
    return d.subarray(ref * 32, ref * 32 + 32);
  };
  const digestOf = (t: Target, i: number): Buffer => (t === 'ram' ? ram.digest(i) : disk.get(i) ?? baseDigest('disk', i));
  const put = (t: Target, i: number, digest: Buffer) => {
    if (t === 'ram') { ram.holdDigest(i, digest); return; }
    // The base's own bytes are not listed (as LayerTracker.hold keeps no copy of a zero chunk over a zero base).
    if (digest.equals(baseDigest('disk', i))) disk.delete(i);
    else disk.set(i, Buffer.from(digest));
  };
  const fds = { ram: fs.openSync(base.ram, 'r'), disk: fs.openSync(base.disk, 'r') };
  try {
    await decodeLaunchRound(r, (t, i, out) => { out.fill(0); fs.readSync(fds[t], out, 0, CHUNK_SIZE, i * CHUNK_SIZE); return out; }, {
      hold: (t, i, data) => (t === 'ram' ? ram.hold(i, data) : put('disk', i, data.equals(ZERO_CHUNK) ? ZERO_DIGEST : createHash('sha256').update(data).digest())),
      held: (t, i) => { throw new CloudletError('Internal', `round 0's digests: the bytes of ${t} chunk ${i} are not kept`); },
      holdCopy: (t, i, rt, ref) => { put(t, i, Buffer.from(digestOf(rt, ref))); return true; },
      holdBase: (t, i, rt, ref) => { put(t, i, baseDigest(rt, ref)); return true; },
    }, compressor, signal);
  } finally {
    fs.closeSync(fds.ram); fs.closeSync(fds.disk);
  }
  return { ram: ram.digests(), disk };
}

export function encodeLaunchDigests(h: { overlayId: string; baseId: string }, d: LaunchDigests): Buffer {
  const pages = d.ram.length / 32;
  const indexes = [...d.disk.keys()].sort((a, b) => a - b);
  const header = Buffer.from(JSON.stringify({ overlayId: h.overlayId, baseId: h.baseId, pages, diskChunks: indexes.length } satisfies Header));
  const disk = Buffer.alloc(indexes.length * 36);
  indexes.forEach((i, k) => {
    if (i > 0xffffffff) throw new CloudletError('Internal', `disk chunk ${i} does not fit the launch digests file`);
    disk.writeUInt32LE(i, k * 36);
    d.disk.get(i)!.copy(disk, k * 36 + 4);
  });
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const body = Buffer.concat([MAGIC, len, header, d.ram, disk]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** Writes the file whole or not at all: a temporary file, fsync, rename, fsync of the folder. */
export function writeLaunchDigests(file: string, h: { overlayId: string; baseId: string }, d: LaunchDigests): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w', 0o600);
    try { fs.writeSync(fd, encodeLaunchDigests(h, d)); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  const dir = fs.openSync(path.dirname(file), 'r');
  try { fs.fsyncSync(dir); } finally { fs.closeSync(dir); }
}

/**
 * The kept launch digests if `file` is whole (its trailing SHA-256) and made for this overlay, base
 * and RAM size; else the reason it is not used.
 */
export function readLaunchDigests(file: string, expect: LaunchDigestsExpected): LaunchDigests | { unusable: string } {
  let b: Buffer;
  try { b = fs.readFileSync(file); } catch (e) { return unreadable(e); }
  return parseLaunchDigests(b, expect);
}

/** readLaunchDigests, the file read off the event loop (a handoff reads it while begin travels). */
export async function readLaunchDigestsAsync(file: string, expect: LaunchDigestsExpected): Promise<LaunchDigests | { unusable: string }> {
  let b: Buffer;
  try { b = await readWhole(file); } catch (e) { return unreadable(e); }
  return parseLaunchDigests(b, expect);
}

export interface LaunchDigestsExpected { overlayId: string; baseId: string; pages: number; diskChunks: number }

function unreadable(e: unknown): { unusable: string } {
  return { unusable: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no launch digests kept' : `the launch digests do not read: ${describeError(e)}` };
}

/** The kept launch digests from the file's bytes `b` (its own buffer: the result holds views of it). */
function parseLaunchDigests(b: Buffer, expect: LaunchDigestsExpected): LaunchDigests | { unusable: string } {
  if (b.length < MAGIC.length + 4 + 32 || !b.subarray(0, MAGIC.length).equals(MAGIC)) return { unusable: 'the launch digests file is not one (torn or another format)' };
  const body = b.subarray(0, b.length - 32);
  if (!createHash('sha256').update(body).digest().equals(b.subarray(b.length - 32))) return { unusable: 'the launch digests file is torn (its checksum does not match)' };
  const hl = body.readUInt32LE(MAGIC.length);
  let h: Header;
  try { h = JSON.parse(body.subarray(MAGIC.length + 4, MAGIC.length + 4 + hl).toString('utf8')) as Header; } catch { return { unusable: 'the launch digests header does not parse' }; }
  if (h.overlayId !== expect.overlayId) return { unusable: `the launch digests are for overlay ${String(h.overlayId).slice(0, 12)}, round 0 is ${expect.overlayId.slice(0, 12)}` };
  if (h.baseId !== expect.baseId) return { unusable: `the launch digests are for base ${String(h.baseId).slice(0, 12)}, the VM runs ${expect.baseId.slice(0, 12)}` };
  if (h.pages !== expect.pages) return { unusable: `the launch digests hold ${h.pages} RAM pages, the VM has ${expect.pages}` };
  const at = MAGIC.length + 4 + hl;
  if (!Number.isSafeInteger(h.diskChunks) || h.diskChunks < 0 || body.length !== at + h.pages * 32 + h.diskChunks * 36) return { unusable: 'the launch digests file has the wrong length for its header' };
  // Views of the file's buffer (its own, read here): no copy (a fresh page costs a first-touch fault).
  const ram = body.subarray(at, at + h.pages * 32);
  const disk = new Map<number, Buffer>();
  for (let k = 0, o = at + h.pages * 32; k < h.diskChunks; k++, o += 36) {
    const i = body.readUInt32LE(o);
    if (i >= expect.diskChunks) return { unusable: `the launch digests list disk chunk ${i}, outside the disk` };
    disk.set(i, body.subarray(o + 4, o + 36));
  }
  return { ram, disk };
}

/** The job from the command line, its shape checked (the daemon wrote it; a wrong one is refused, not guessed). */
export function parseLaunchDigestsJob(text: string): LaunchDigestsJob {
  let j: LaunchDigestsJob;
  try { j = JSON.parse(text) as LaunchDigestsJob; } catch { throw new CloudletError('BadInput', 'launch-digests: the job is not JSON'); }
  const str = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (!j || !str(j.launchOverlay) || !str(j.launchOverlayId) || !str(j.out) || !/^[0-9a-f]{64}$/.test(String(j.baseId)) || !j.base
    || !str(j.base.ram) || !str(j.base.disk) || !str(j.base.ramDigests) || !str(j.base.diskDigests)
    || !Number.isSafeInteger(j.ramBytes) || j.ramBytes <= 0 || j.ramBytes % CHUNK_SIZE || (j.warmRam !== undefined && !str(j.warmRam))
    || (j.parentPid !== undefined && (!Number.isSafeInteger(j.parentPid) || j.parentPid <= 0))) throw new CloudletError('BadInput', 'launch-digests: the job lacks a field or has a wrong one');
  return j;
}

/** The child's work: round 0 read and checked as a handoff would, decoded into digests, written. */
export async function runLaunchDigestsJob(job: LaunchDigestsJob): Promise<{ ms: number; diskChunks: number }> {
  const t0 = Date.now();
  // A daemon killed outright (no exit handler ran) leaves this child to its own: it stops itself.
  const parentGone = () => job.parentPid !== undefined && process.ppid !== job.parentPid;
  const watch = setInterval(() => { if (parentGone()) process.exit(3); }, 1000);
  watch.unref();
  try { return await computeAndKeep(job, t0, parentGone); } finally { clearInterval(watch); }
}

async function computeAndKeep(job: LaunchDigestsJob, t0: number, parentGone: () => boolean): Promise<{ ms: number; diskChunks: number }> {
  let madeFrom: string | undefined;
  try { madeFrom = fs.readFileSync(job.launchOverlayId, 'utf8').trim(); } catch { madeFrom = undefined; }
  const sizes = { ram: job.ramBytes, disk: fs.statSync(job.base.disk).size };
  // Lazy: each segment or unit read and checked when decoded, one at a time (the whole overlay held
  // at once was ~300-400 MB of RSS for a 21-30 MB Debian overlay); a bad one fails the job.
  const r = await readLaunchRound(job.launchOverlay, madeFrom, job.baseId, sizes, { units: true, lazy: true });
  if ('unusable' in r) throw new CloudletError('Conflict', `no launch digests: ${r.unusable}`);
  const compressor = new SegmentCompressor(1);
  try {
    const d = await computeLaunchDigests(r, job.base, { ram: fs.readFileSync(job.base.ramDigests), disk: fs.readFileSync(job.base.diskDigests) }, job.ramBytes / CHUNK_SIZE, compressor);
    writeLaunchDigests(job.out, { overlayId: r.overlayId, baseId: job.baseId }, d);
    if (job.warmRam) warmPageCache(job.warmRam, parentGone);
    return { ms: Date.now() - t0, diskChunks: d.disk.size };
  } finally {
    r.close?.();
    await compressor.close();
  }
}

/**
 * Reads the VM's RAM file once through the page cache. Its holes (pages the guest never wrote since
 * the launch: most of a 1 GiB guest) then have zero pages in the cache, so the first read of each by
 * QEMU's migration (a handoff's first pass, which reads every page) maps a cached page instead of
 * allocating and zeroing one: measured 1.2-1.5 s of kernel time in QEMU's migration thread for the
 * 1 GiB Debian guest, on the handoff's path; here it is spent at nice 19 beforehand.
 */
export function warmPageCache(file: string, stop: () => boolean = () => false): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (let pos = 0; !stop(); pos += buf.length) if (fs.readSync(fd, buf, 0, buf.length, pos) <= 0) break;
  } finally { fs.closeSync(fd); }
}
