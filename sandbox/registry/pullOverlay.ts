/**
 * `overlay pull`: downloads an overlay artifact (segments in parallel, verified, cached by digest)
 * and writes the overlay file, byte-identical to the one that was published.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { openOverlayChainFromOci, OciOverlayOptions } from './ociOverlaySource';
import { readOverlayFile } from './overlayFile';
import { OverlayReader } from '../overlay/overlayReader';
import { verifyOverlay } from '../overlay/verify';

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
  const tmpFiles: string[] = [];
  try {
    const file = outFile ?? path.join(process.cwd(), `${o.overlayId}.overlay`);
    const dir = path.dirname(path.resolve(file));
    await fs.promises.mkdir(dir, { recursive: true });
    // Every hop is written under a private temp name and verified whole (its segments decode to what its manifest
    // says) before any is renamed into place, parents first: the ID does not cover compressed bytes, so a registry
    // could serve a broken file under a good overlay's ID, and it must never replace that overlay here.
    const targets = c.hops.map((h, i) => (i === c.hops.length - 1 ? path.resolve(file) : path.join(dir, `${h.overlayId}.overlay`)));
    const infos = [];
    for (const [i, h] of c.hops.entries()) {
      const tmp = `${targets[i]}.pull-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
      tmpFiles.push(tmp);
      await h.writeTo(tmp);
      const info = readOverlayFile(tmp);
      if (info.overlayId !== h.overlayId) throw new CloudletError('Corrupt', `the pulled overlay's ID ${info.overlayId} is not the published ${h.overlayId}`);
      const reader = OverlayReader.open(tmp);
      try { await verifyOverlay(reader, reader, { signal: opts.signal }); } finally { reader.close(); }
      infos.push(info);
    }
    for (const [i, tmp] of tmpFiles.entries()) fs.renameSync(tmp, targets[i]);
    tmpFiles.length = 0;
    const info = infos[infos.length - 1];
    const parents: NonNullable<PullReport['parents']> = c.hops.slice(0, -1)
      .map((p, i) => ({ overlayId: p.overlayId, file: targets[i], bytesDownloaded: p.source.counts.bytesDownloaded }));
    return {
      reference: o.reference, manifestDigest: o.manifestDigest, overlayId: o.overlayId, baseId: o.baseId, file,
      segments: { total: o.segments.length, downloaded: o.source.counts.downloaded, fromCache: o.source.counts.fromCache },
      bytesDownloaded: o.source.counts.bytesDownloaded, fileSize: info.fileSize, retries: o.stats.retries,
      seconds: (Date.now() - t0) / 1000,
      ...(parents.length ? { parents } : {}),
    };
  } finally {
    for (const t of tmpFiles) fs.rmSync(t, { force: true });
    await c.close();
  }
}
