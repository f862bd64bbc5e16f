/**
 * A generated base + launch pair (generatedImages.ts) and the overlay made from it, in a fresh temp
 * folder: what the launch-round and launch-digests tests start from. The caller closes the
 * compressor and removes `tmp`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Target } from '../../../sandbox/overlay/format';
import { createOverlay } from '../../../sandbox/overlay/overlayWriter';
import { SegmentCompressor } from '../../../sandbox/overlay/segmentCompressor';
import { makePair, type GeneratedPair } from './generatedImages';

export interface LaunchOverlayFixture {
  tmp: string;
  pair: GeneratedPair;
  compressor: SegmentCompressor;
  overlayFile: string;
  overlayId: string;
  sizes: Record<Target, number>;
}

export async function makeLaunchOverlay(prefix: string): Promise<LaunchOverlayFixture> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const pair = makePair(path.join(tmp, 'pair'));
  const compressor = new SegmentCompressor(2);
  const made = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays'), compressor });
  return { tmp, pair, compressor, overlayFile: made.path, overlayId: made.overlayId, sizes: { ram: pair.ram.length, disk: fs.statSync(pair.base.diskFile).size } };
}
