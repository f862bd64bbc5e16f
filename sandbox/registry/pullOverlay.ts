/**
 * `overlay pull`: downloads an overlay artifact (segments in parallel, verified, cached by digest)
 * and writes the overlay file, byte-identical to the one that was published.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { openOverlayChainFromOci, OciOverlayOptions } from './ociOverlaySource';
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
  /** A child overlay: its parents (root first), each written next to the file as <overlayId>.overlay. */
  parents?: Array<{ overlayId: string; file: string; bytesDownloaded: number }>;
}

export async function pullOverlay(refText: string, outFile: string | undefined, opts: OciOverlayOptions = {}): Promise<PullReport> {
  const t0 = Date.now();
  // A child overlay comes with its chain, checked before any segment is fetched.
  const c = await openOverlayChainFromOci(refText, opts);
  const o = c.leaf;
  try {
    const file = outFile ?? path.join(process.cwd(), `${o.overlayId}.overlay`);
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const parents: NonNullable<PullReport['parents']> = [];
    for (const p of c.hops.slice(0, -1)) {
      const pf = path.join(path.dirname(path.resolve(file)), `${p.overlayId}.overlay`);
      await p.writeTo(pf);
      if (readOverlayFile(pf).overlayId !== p.overlayId) { fs.rmSync(pf, { force: true }); throw new CloudletError('Corrupt', `the pulled parent overlay's ID is not the published ${p.overlayId}`); }
      parents.push({ overlayId: p.overlayId, file: pf, bytesDownloaded: p.source.counts.bytesDownloaded });
    }
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
      ...(parents.length ? { parents } : {}),
    };
  } finally {
    await c.close();
  }
}
