/**
 * Compression profiles. `build` (zstd 3) keeps `cloudlet build` fast; `wire` (zstd 19) is for what
 * crosses a network: `overlay publish` re-compresses a build overlay segment by segment, and
 * `overlay create --profile wire` writes it directly. Same segments (boundaries depend only on the
 * chunk sequence), same decompressed bytes, same overlay ID (it names the content: format.ts
 * overlayIdOf); only the compressed bytes, their names and sizes differ. zstd is deterministic per
 * level, so both routes give the same file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, type ProgressSink } from '../common/progress';
import { fetchSegment } from './apply';
import { canonicalJson, encodeContainerHeader, overlayIdOf, TARGETS, type OverlayManifest, type SegmentEntry } from './format';
import { OverlayReader } from './overlayReader';
import { DEVICE_STATE_LEVEL } from './overlayWriter';
import { SegmentCompressor } from './segmentCompressor';

export type ProfileName = 'build' | 'wire';
export const PROFILE_LEVELS: Record<ProfileName, number> = { build: 3, wire: 19 };

export function parseProfile(text: string): ProfileName {
  if (text === 'build' || text === 'wire') return text;
  throw new CloudletError('BadInput', `--profile ${JSON.stringify(text)} is not one of build, wire`);
}

export interface RecompressResult { overlayId: string; path: string; bytes: number; manifest: OverlayManifest; sourceBytes: number; ms: number }

/**
 * Writes `outFile`: the overlay `file` with every segment decompressed (all of apply's checks) and
 * compressed again at `level` (the device state at max(level, 19), as the writer does). The file
 * appears only when complete.
 */
export async function recompressOverlay(file: string, outFile: string, opts: { level: number; threads?: number; compressor?: SegmentCompressor; signal?: AbortSignal; progress?: ProgressSink }): Promise<RecompressResult> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const reader = OverlayReader.open(file);
  const compressor = opts.compressor ?? new SegmentCompressor(opts.threads);
  const tmp = `${outFile}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const segTmp = `${tmp}.segments`;
  let fd: number | undefined, segFd: number | undefined;
  try {
    const m = reader.manifest;
    const total = m.segments.reduce((n, s) => n + s.rawSize, 0);
    let done = 0;
    fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
    segFd = fs.openSync(segTmp, 'w');
    const out: SegmentEntry[] = [];
    // A window of segments in flight on the workers; written in manifest order.
    const window = compressor.threads * 2;
    const jobs: Array<Promise<{ entry: SegmentEntry; data: Buffer }>> = [];
    const start = (entry: SegmentEntry) => (async () => {
      const raw = await fetchSegment(entry, reader, compressor, opts.signal);
      const c = await compressor.compress(raw, entry.kind === 'device-state' ? Math.max(opts.level, DEVICE_STATE_LEVEL) : opts.level);
      return { entry: { ...entry, digest: c.digest, size: c.data.length, rawDigest: c.rawDigest }, data: c.data };
    })();
    let next = 0;
    while (next < m.segments.length && jobs.length < window) jobs.push(start(m.segments[next++]));
    while (jobs.length) {
      throwIfCancelled(opts.signal);
      const r = await jobs.shift()!;
      if (next < m.segments.length) jobs.push(start(m.segments[next++]));
      out.push(r.entry);
      fs.writeSync(segFd, r.data);
      done += r.entry.rawSize;
      progress({ phase: 'recompress', done, total });
    }
    fs.closeSync(segFd); segFd = undefined;
    if (new Set(out.map((s) => s.digest)).size !== out.length) throw new CloudletError('Internal', 'two segments compressed to the same bytes');
    const breakdown = structuredClone(m.breakdown);
    for (const t of TARGETS) breakdown[t].compressedBytes = out.filter((s) => s.kind === 'chunks' && s.target === t).reduce((n, s) => n + s.size, 0);
    const manifest: OverlayManifest = { ...m, compression: { algorithm: 'zstd', level: opts.level }, segments: out, breakdown };
    const manifestBytes = Buffer.from(canonicalJson(manifest), 'utf8');
    fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, encodeContainerHeader(manifestBytes));
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
