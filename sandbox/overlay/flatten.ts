/**
 * `overlay flatten`: a child overlay and its chain -> one ordinary overlay against the base (no
 * parent, depth reset). The chain is resolved and checked as synthesis does, applied to launch
 * files in a work folder (no VM), and the writer stores that launch against the base.
 */
import * as fs from 'fs';
import * as path from 'path';
import { noProgress, type ProgressSink } from '../common/progress';
import { applyChain, resolveChain, type ChainHop, type ParentLookup } from './parentChain';
import { createOverlay, type BaseImages, type CreateOverlayResult } from './overlayWriter';
import { BUILD_LEVEL } from './recompress';
import type { SegmentCompressor } from './segmentCompressor';

export interface FlattenOptions {
  outFile?: string;
  outDir?: string;
  /** Folder for the intermediate launch files (removed afterwards). */
  workDir: string;
  level?: number;
  compressor?: SegmentCompressor;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export async function flattenOverlay(leaf: ChainHop, lookup: ParentLookup, base: Omit<BaseImages, 'parent'>, opts: FlattenOptions): Promise<CreateOverlayResult & { chain: string[] }> {
  const progress = opts.progress ?? noProgress;
  const chain = await resolveChain(leaf, lookup);
  const work = path.join(opts.workDir, `flatten-${process.pid}-${Date.now()}`);
  try {
    progress({ phase: 'flatten', message: `building the launch of ${chain.length} overlay${chain.length > 1 ? 's' : ''}` });
    const launch = await applyChain(chain, { baseId: base.baseId, ramFile: base.ramFile, diskFile: base.diskFile }, {
      outDir: path.join(work, 'launch'), compressor: opts.compressor, signal: opts.signal, progress,
    });
    const r = await createOverlay(base, { ramFile: launch.ramFile, diskLayer: launch.diskLayer, deviceState: launch.deviceState, vmConfig: leaf.manifest.vmConfig }, {
      outFile: opts.outFile, outDir: opts.outDir, level: opts.level ?? (leaf.manifest.compression.algorithm === 'zstd' ? leaf.manifest.compression.level : BUILD_LEVEL), compressor: opts.compressor, signal: opts.signal, progress,
    });
    return { ...r, chain: chain.map((h) => h.overlayId) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
