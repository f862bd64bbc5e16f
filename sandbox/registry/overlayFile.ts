/**
 * The one place that touches the overlay file container (sandbox/overlay/format.ts): read a file's
 * manifest bytes and segments for publishing, and write a file back from manifest + segments when
 * pulling. Container = header, canonical manifest, then each segment's compressed bytes in manifest
 * order, so a pulled file is byte-identical to the published one.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { containerVersionOf, encodeContainerHeader, OverlayManifest } from '../overlay/format';
import { OverlayReader, parseManifest } from '../overlay/overlayReader';

export interface SegmentRange {
  digest: string;
  size: number;
  offset: number;   // byte offset in the overlay file
}

export interface OverlayFileInfo {
  path: string;
  manifestBytes: Buffer;
  manifest: OverlayManifest;
  overlayId: string;       // hex SHA-256 of the manifest bytes
  baseId: string;
  segments: SegmentRange[];
  fileSize: number;
}

/** Checks overlay manifest bytes (from a pulled config blob); `what` names where they came from. */
export function parseOverlayManifest(manifestBytes: Buffer, what: string): OverlayManifest {
  try {
    return parseManifest(manifestBytes).manifest;
  } catch (e) {
    if (e instanceof CloudletError) throw new CloudletError(e.code, `${what}: ${e.message}`, { hint: e.hint, cause: e });
    throw e;
  }
}

/** Manifest and segment byte ranges of an overlay file (structure checked by OverlayReader). */
export function readOverlayFile(file: string): OverlayFileInfo {
  const r = OverlayReader.open(file);
  try {
    return {
      path: file, manifestBytes: r.manifestBytes, manifest: r.manifest, overlayId: r.overlayId, baseId: r.manifest.baseId,
      segments: r.segmentRanges().map((x) => ({ digest: x.digest, size: x.length, offset: x.offset })), fileSize: r.fileSize,
    };
  } finally {
    r.close();
  }
}

export function readSegmentBytes(info: OverlayFileInfo, seg: SegmentRange): Buffer {
  const fd = fs.openSync(info.path, 'r');
  try {
    const buf = Buffer.alloc(seg.size);
    fs.readSync(fd, buf, 0, seg.size, seg.offset);
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes an overlay file from its manifest and a reader of each segment, to `file.partial` first and
 * renamed only when complete, so nothing half-written looks like an overlay.
 */
export async function writeOverlayFile(file: string, manifestBytes: Buffer, digests: string[],
  segment: (digest: string) => Promise<Buffer>): Promise<void> {
  // One writer's own temp name: two pulls of the same parent at once must not write into one file.
  const tmp = `${file}.partial-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.write(encodeContainerHeader(manifestBytes, containerVersionOf(parseManifest(manifestBytes).manifest)));
    await fh.write(manifestBytes);
    for (const d of digests) await fh.write(await segment(d));
    await fh.sync();
  } catch (e) {
    await fh.close();
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await fs.promises.rename(tmp, file);
}
