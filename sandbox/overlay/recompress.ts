/**
 * Compression profiles. `build` (zstd 3, each segment on its own) keeps `cloudlet build` fast;
 * `wire` (xz 9 over compression units of up to 128 MiB of one image, container version 2:
 * xzUnits.ts) is for what crosses a network: `overlay publish` re-compresses a build overlay, and
 * `overlay create --profile wire` writes a build overlay and re-compresses it. Same segments
 * (boundaries depend only on the chunk sequence), same decompressed bytes, same overlay ID (it names
 * the content: format.ts overlayIdOf); only what is stored, its names and sizes differ. Both codecs
 * are deterministic (single-threaded per segment or unit), so the same overlay gives the same file.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, type ProgressSink } from '../common/progress';
import { segmentFetcher } from './apply';
import { canonicalJson, compressedBytesOf, containerVersionOf, encodeContainerHeader, overlayIdOf, TARGETS, type Compression, type CompressionUnit, type OverlayManifest, type SegmentEntry } from './format';
import { OverlayReader } from './overlayReader';
import { DEVICE_STATE_LEVEL } from './overlayWriter';
import { SegmentCompressor } from './segmentCompressor';
import { compressUnit, planUnits, XZ_LEVEL } from './xzUnits';

export type ProfileName = 'build' | 'wire';
/** The build profile's zstd level (what `cloudlet build` and `overlay create` write). */
export const BUILD_LEVEL = 3;
export type Codec = { algorithm: 'zstd'; level: number } | { algorithm: 'xz'; level: number };
export const PROFILES: Record<ProfileName, Codec> = { build: { algorithm: 'zstd', level: BUILD_LEVEL }, wire: { algorithm: 'xz', level: XZ_LEVEL } };

/** True when an overlay is already stored the way `profile` stores it. */
export function hasProfile(m: OverlayManifest, profile: ProfileName): boolean {
  const c = PROFILES[profile];
  return m.compression.algorithm === c.algorithm && m.compression.level === c.level;
}

export function parseProfile(text: string): ProfileName {
  if (text === 'build' || text === 'wire') return text;
  throw new CloudletError('BadInput', `--profile ${JSON.stringify(text)} is not one of build, wire`);
}

export interface RecompressResult { overlayId: string; path: string; bytes: number; manifest: OverlayManifest; sourceBytes: number; ms: number }

/**
 * Writes `outFile`: the overlay `file` with every segment decompressed (all of apply's checks) and
 * stored again with `codec`: zstd at its level per segment (the device state at max(level, 19), as
 * the writer does), or xz compression units (planUnits). The file appears only when complete.
 */
export async function recompressOverlay(file: string, outFile: string, opts: { codec: Codec; threads?: number; compressor?: SegmentCompressor; signal?: AbortSignal; progress?: ProgressSink }): Promise<RecompressResult> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const reader = OverlayReader.open(file);
  const compressor = opts.compressor ?? new SegmentCompressor(opts.threads);
  const tmp = `${outFile}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const segTmp = `${tmp}.segments`;
  let fd: number | undefined, segFd: number | undefined;
  try {
    const m = reader.manifest;
    const fetch = segmentFetcher(m, reader, compressor, opts.signal);
    const total = m.segments.reduce((n, s) => n + s.rawSize, 0);
    let done = 0;
    fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
    segFd = fs.openSync(segTmp, 'w');
    const xz = opts.codec.algorithm === 'xz';
    // Jobs: one per segment (zstd) or per unit (xz); a window of them in flight, written in order.
    const plan = xz ? planUnits(m.segments) : m.segments.map((_, i) => ({ first: i, count: 1, rawSize: m.segments[i].rawSize }));
    const segments: SegmentEntry[] = [];
    const units: CompressionUnit[] = [];
    // xz 9 takes ~670 MiB per encoder: at most two units at once.
    const window = xz ? Math.max(1, Math.min(2, compressor.threads)) : compressor.threads * 2;
    type Job = { entries: SegmentEntry[]; unit?: CompressionUnit; data: Buffer };
    const start = (p: { first: number; count: number; rawSize: number }): Promise<Job> => (async () => {
      const held = m.segments.slice(p.first, p.first + p.count);
      const raws: Buffer[] = [];
      for (const entry of held) raws.push(await fetch(entry));
      if (opts.codec.algorithm === 'zstd') {
        const entry = held[0];
        const c = await compressor.compress(raws[0], entry.kind === 'device-state' ? Math.max(opts.codec.level, DEVICE_STATE_LEVEL) : opts.codec.level);
        return { entries: [{ ...entry, digest: c.digest, size: c.data.length, rawDigest: c.rawDigest }], data: c.data };
      }
      // In a unit a segment has no stored bytes of its own: its names are its content's.
      const entries = held.map((e) => ({ ...e, digest: e.rawDigest!, size: e.rawSize }));
      const data = await compressUnit(Buffer.concat(raws));
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      return { entries, unit: { digest, size: data.length, rawSize: p.rawSize, segments: p.count }, data };
    })();
    if (xz && m.segments.some((s) => s.rawDigest === undefined)) {
      throw new CloudletError('BadInput', `overlay ${reader.overlayId} predates content names (rawDigest); re-create it to store it with the wire profile`);
    }
    const jobs: Array<Promise<Job>> = [];
    let next = 0;
    while (next < plan.length && jobs.length < window) jobs.push(start(plan[next++]));
    while (jobs.length) {
      throwIfCancelled(opts.signal);
      const r = await jobs.shift()!;
      if (next < plan.length) jobs.push(start(plan[next++]));
      segments.push(...r.entries);
      if (r.unit) units.push(r.unit);
      fs.writeSync(segFd, r.data);
      done += r.entries.reduce((n, e) => n + e.rawSize, 0);
      progress({ phase: 'recompress', done, total });
    }
    fs.closeSync(segFd); segFd = undefined;
    const names = xz ? units.map((u) => u.digest) : segments.map((s) => s.digest);
    if (new Set(names).size !== names.length) throw new CloudletError('Internal', 'two segments or units compressed to the same bytes');
    const compression: Compression = xz ? { algorithm: 'xz', level: opts.codec.level, units } : { algorithm: 'zstd', level: opts.codec.level };
    const manifest: OverlayManifest = { ...m, compression, segments, breakdown: structuredClone(m.breakdown) };
    for (const t of TARGETS) manifest.breakdown[t].compressedBytes = compressedBytesOf(manifest, t);
    const manifestBytes = Buffer.from(canonicalJson(manifest), 'utf8');
    fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, encodeContainerHeader(manifestBytes, containerVersionOf(manifest)));
    fs.writeSync(fd, manifestBytes);
    const block = Buffer.alloc(8 << 20);
    const src = fs.openSync(segTmp, 'r');
    try {
      for (let n; (n = fs.readSync(src, block, 0, block.length, null)) > 0;) fs.writeSync(fd, block, 0, n);
    } finally { fs.closeSync(src); }
    fs.fsyncSync(fd);
    const bytes = fs.fstatSync(fd).size;
    fs.closeSync(fd); fd = undefined;
    fs.renameSync(tmp, outFile);
    return { overlayId: overlayIdOf(manifest, manifestBytes), path: outFile, bytes, manifest, sourceBytes: reader.fileSize, ms: Date.now() - t0 };
  } finally {
    if (segFd !== undefined) fs.closeSync(segFd);
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(segTmp, { force: true });
    fs.rmSync(tmp, { force: true });
    reader.close();
    if (!opts.compressor) await compressor.close();
  }
}
