/**
 * Checks an overlay without building anything: every segment's size, SHA-256 and decompressed size,
 * its records against the manifest's chunk list, every index and copy reference in bounds, and
 * (given a base ID) that it was made for that base. `overlay verify` and publishing use it.
 */
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, ProgressSink } from '../common/progress';
import { segmentFetcher } from './apply';
import { CHUNK_SIZE, decodeSegment, Encoding, ENCODING_NAMES, expandRuns, OverlayManifest, Target, validateManifest } from './format';
import { SegmentSource } from './overlayReader';
import { SegmentCompressor } from './segmentCompressor';

export interface VerifyResult { segments: number; compressedBytes: number; rawBytes: number; chunks: Record<Target, number> }

export async function verifyOverlay(
  overlay: { manifest: OverlayManifest },
  source: SegmentSource,
  opts: { baseId?: string; compressor?: SegmentCompressor; signal?: AbortSignal; progress?: ProgressSink } = {},
): Promise<VerifyResult> {
  const m = validateManifest(overlay.manifest);
  const progress = opts.progress ?? noProgress;
  if (opts.baseId && opts.baseId !== m.baseId) throw new CloudletError('Mismatch', `overlay was made for base ${m.baseId}, not ${opts.baseId}`);
  const limit: Record<Target, number> = { ram: m.ram.size / CHUNK_SIZE, disk: Math.ceil(m.disk.size / CHUNK_SIZE) };
  const baseLimit: Record<Target, number> = { ram: Math.ceil(m.base.ramSize / CHUNK_SIZE), disk: Math.ceil(m.base.diskSize / CHUNK_SIZE) };
  const literal: Record<Target, Set<number>> = { ram: new Set(), disk: new Set() };
  const selfRefs: Array<{ t: Target; i: number; rt: Target; r: number }> = [];
  const counts: Record<Target, Record<string, number>> = { ram: {}, disk: {} };
  const compressor = opts.compressor ?? new SegmentCompressor();
  const result: VerifyResult = { segments: 0, compressedBytes: 0, rawBytes: 0, chunks: { ram: 0, disk: 0 } };
  const fetch = segmentFetcher(m, source, compressor, opts.signal);
  const stored = m.compression.algorithm === 'xz' ? m.compression.units.reduce((n, u) => n + u.size, 0) : 0;
  try {
    for (const entry of m.segments) {
      throwIfCancelled(opts.signal);
      const raw = await fetch(entry);
      result.segments++; result.rawBytes += raw.length;
      if (m.compression.algorithm !== 'xz') result.compressedBytes += entry.size;
      progress({ phase: 'verify', done: result.rawBytes, total: m.segments.reduce((n, s) => n + s.rawSize, 0) });
      if (entry.kind !== 'chunks') continue;
      const t = entry.target!;
      const { records } = decodeSegment(raw, entry.digest);
      const expected = expandRuns(entry.chunks!);
      if (records.length !== expected.length) throw new CloudletError('Corrupt', `segment ${entry.digest} holds ${records.length} records but the manifest lists ${expected.length} chunks`);
      records.forEach((r, k) => {
        if (r.index !== expected[k] || r.index >= limit[t]) throw new CloudletError('Corrupt', `segment ${entry.digest} record ${k} names ${t} chunk ${r.index}, the manifest lists ${expected[k]} (image has ${limit[t]} chunks)`);
        const name = ENCODING_NAMES[r.encoding];
        counts[t][name] = (counts[t][name] ?? 0) + 1;
        if (r.encoding === Encoding.BaseRam && r.ref >= baseLimit.ram) throw new CloudletError('Corrupt', `${t} chunk ${r.index} copies base RAM page ${r.ref}, outside the base (${baseLimit.ram} pages)`);
        if (r.encoding === Encoding.BaseDisk && r.ref >= baseLimit.disk) throw new CloudletError('Corrupt', `${t} chunk ${r.index} copies base disk chunk ${r.ref}, outside the base (${baseLimit.disk} chunks)`);
        if (r.encoding === Encoding.Xor && r.index >= baseLimit[t]) throw new CloudletError('Corrupt', `${t} chunk ${r.index} is a delta against a base chunk that does not exist`);
        if (r.encoding === Encoding.Self) selfRefs.push({ t, i: r.index, rt: r.refTarget, r: r.ref });
        else if (r.encoding !== Encoding.Zero) literal[t].add(r.index);
      });
      result.chunks[t] += records.length;
    }
    for (const s of selfRefs) {
      if (!literal[s.rt].has(s.r)) throw new CloudletError('Corrupt', `${s.t} chunk ${s.i} copies ${s.rt} chunk ${s.r}, which this overlay does not store`);
    }
    for (const t of ['ram', 'disk'] as const) {
      for (const n of ENCODING_NAMES) {
        if ((counts[t][n] ?? 0) !== m.breakdown[t].encodings[n]) throw new CloudletError('Corrupt', `manifest breakdown says ${m.breakdown[t].encodings[n]} ${t} chunks are "${n}", the segments hold ${counts[t][n] ?? 0}`);
      }
    }
    if (m.compression.algorithm === 'xz') result.compressedBytes = stored;
    return result;
  } finally {
    if (!opts.compressor) await compressor.close();
  }
}
