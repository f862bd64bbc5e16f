/**
 * The one place that touches the overlay file container (sandbox/overlay/format.ts): read a file's
 * manifest bytes and segments for publishing, and write a file back from manifest + segments when
 * pulling. Container = header, canonical manifest, then each segment's compressed bytes in manifest
 * order, so a pulled file is byte-identical to the published one.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import {
  CONTAINER_HEADER_SIZE, decodeContainerHeader, encodeContainerHeader, OverlayManifest, overlayIdOf, validateManifest,
} from '../overlay/format';

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

export function parseOverlayManifest(manifestBytes: Buffer, what: string): OverlayManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(manifestBytes.toString('utf8'));
  } catch {
    throw new CloudletError('Corrupt', `${what}: the overlay manifest is not JSON`);
  }
  return validateManifest(raw);
}

export function readOverlayFile(file: string): OverlayFileInfo {
  const fd = fs.openSync(file, 'r');
  try {
    const fileSize = fs.fstatSync(fd).size;
    const header = Buffer.alloc(CONTAINER_HEADER_SIZE);
    fs.readSync(fd, header, 0, CONTAINER_HEADER_SIZE, 0);
    const len = decodeContainerHeader(header.subarray(0, Math.min(fileSize, CONTAINER_HEADER_SIZE)));
    if (CONTAINER_HEADER_SIZE + len > fileSize) throw new CloudletError('Corrupt', `overlay file ${file} is truncated inside its manifest`);
    const manifestBytes = Buffer.alloc(len);
    fs.readSync(fd, manifestBytes, 0, len, CONTAINER_HEADER_SIZE);
    const manifest = parseOverlayManifest(manifestBytes, file);
    let offset = CONTAINER_HEADER_SIZE + len;
    const segments: SegmentRange[] = manifest.segments.map((s) => {
      const r = { digest: s.digest, size: s.size, offset };
      offset += s.size;
      return r;
    });
    if (offset !== fileSize) {
      throw new CloudletError('Corrupt', `overlay file ${file} is ${fileSize} bytes but its manifest accounts for ${offset}`);
    }
    return { path: file, manifestBytes, manifest, overlayId: overlayIdOf(manifestBytes), baseId: manifest.baseId, segments, fileSize };
  } finally {
    fs.closeSync(fd);
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
  const tmp = `${file}.partial`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.write(encodeContainerHeader(manifestBytes));
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
