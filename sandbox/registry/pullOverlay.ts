/**
 * `overlay pull`: downloads an overlay artifact (segments in parallel, verified, cached by digest)
 * and writes the overlay file, byte-identical to the one that was published.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { openOverlayFromOci, OciOverlayOptions } from './ociOverlaySource';
import { readOverlayFile } from './overlayFile';

export interface PullReport {
  reference: string;
  manifestDigest: string;
  overlayId: string;
  baseId: string;
  file: string;
  segments: { total: number; downloaded: number; fromCache: number };
  bytesDownloaded: number;
  fileSize: number;
  retries: number;
  seconds: number;
}

export async function pullOverlay(refText: string, outFile: string | undefined, opts: OciOverlayOptions = {}): Promise<PullReport> {
  const t0 = Date.now();
  const o = await openOverlayFromOci(refText, opts);
  try {
    const file = outFile ?? path.join(process.cwd(), `${o.overlayId}.overlay`);
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await o.writeTo(file);
    const info = readOverlayFile(file);
    if (info.overlayId !== o.overlayId) {
      fs.rmSync(file, { force: true });
      throw new CloudletError('Corrupt', `the pulled overlay's ID ${info.overlayId} is not the published ${o.overlayId}`);
    }
    return {
      reference: o.reference, manifestDigest: o.manifestDigest, overlayId: o.overlayId, baseId: o.baseId, file,
      segments: { total: o.segments.length, downloaded: o.source.counts.downloaded, fromCache: o.source.counts.fromCache },
      bytesDownloaded: o.source.counts.bytesDownloaded, fileSize: info.fileSize, retries: o.stats.retries,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    await o.close();
  }
}
