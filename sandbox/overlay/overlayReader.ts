/**
 * Reads an overlay container file: its manifest (checked), each segment's byte range, and segments
 * by name. Segment access goes through the SegmentSource interface so synthesis does not care
 * whether segments come from this file, an OCI registry or HTTP Range requests.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import {
  checkContainerVersion, CONTAINER_HEADER_SIZE, decodeContainerHead, OverlayManifest, overlayIdOf, segmentName, storedBlobs, validateManifest,
} from './format';

/** Where synthesis gets segment bytes. Implementations need not verify; applyOverlay does. */
export interface SegmentSource {
  /** The compressed bytes of the segment named `digest` ("sha256:<hex>"), `size` bytes long. */
  getSegment(digest: string, size: number, signal?: AbortSignal): Promise<Buffer>;
}

/** A stored blob's place in the container: a segment (zstd manifests) or a compression unit (xz). */
export interface SegmentRange { digest: string; offset: number; length: number }

/** Parses and checks manifest bytes (from a file, an OCI config blob or an HTTP response). */
export function parseManifest(bytes: Buffer): { manifest: OverlayManifest; overlayId: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new CloudletError('Corrupt', `overlay manifest is not valid JSON (${(e as Error).message}); the file is damaged or truncated`);
  }
  const manifest = validateManifest(raw);
  return { manifest, overlayId: overlayIdOf(manifest, bytes) };
}

/** Where each stored blob (segment or unit) sits in a container whose manifest is `manifestLength` bytes. */
export function segmentRanges(manifest: OverlayManifest, manifestLength: number): SegmentRange[] {
  let offset = CONTAINER_HEADER_SIZE + manifestLength;
  return storedBlobs(manifest).map((b) => {
    const r = { digest: b.digest, offset, length: b.size };
    offset += b.size;
    return r;
  });
}

export class OverlayReader implements SegmentSource {
  readonly path: string;
  readonly manifest: OverlayManifest;
  readonly manifestBytes: Buffer;
  readonly overlayId: string;
  readonly fileSize: number;
  private readonly fd: number;
  private readonly ranges: Map<string, SegmentRange>;

  private constructor(path: string, fd: number, manifestBytes: Buffer, fileSize: number, version: number) {
    this.path = path;
    this.fd = fd;
    this.manifestBytes = manifestBytes;
    this.fileSize = fileSize;
    const { manifest, overlayId } = parseManifest(manifestBytes);
    checkContainerVersion(version, manifest, `overlay file ${path}`);
    this.manifest = manifest;
    this.overlayId = overlayId;
    const ranges = segmentRanges(manifest, manifestBytes.length);
    this.ranges = new Map(ranges.map((r) => [r.digest, r]));
    const expected = ranges.length ? ranges[ranges.length - 1].offset + ranges[ranges.length - 1].length : CONTAINER_HEADER_SIZE + manifestBytes.length;
    if (fileSize < expected) throw new CloudletError('Corrupt', `overlay file ${path} is truncated: ${fileSize} bytes, its manifest needs ${expected}`);
    if (fileSize > expected) throw new CloudletError('Corrupt', `overlay file ${path} has ${fileSize - expected} unexpected bytes after its last segment`);
  }

  /** Opens and checks the container structure (header, manifest, total length); not the segments. */
  static open(path: string): OverlayReader {
    const fd = fs.openSync(path, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const header = Buffer.alloc(CONTAINER_HEADER_SIZE);
      const got = fs.readSync(fd, header, 0, header.length, 0);
      const { version, manifestLength: len } = decodeContainerHead(header.subarray(0, got));
      if (size < CONTAINER_HEADER_SIZE + len) throw new CloudletError('Corrupt', `overlay file ${path} is truncated: ${size} bytes, shorter than its ${len}-byte manifest`);
      const manifestBytes = Buffer.alloc(len);
      fs.readSync(fd, manifestBytes, 0, len, CONTAINER_HEADER_SIZE);
      return new OverlayReader(path, fd, manifestBytes, size, version);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Byte ranges of every segment in the file, in manifest order (for HTTP Range or OCI layers). */
  segmentRanges(): SegmentRange[] {
    return [...this.ranges.values()];
  }

  segmentRange(digest: string): SegmentRange {
    const r = this.ranges.get(digest);
    if (!r) throw new CloudletError('NotFound', `overlay ${this.overlayId} has no segment ${digest}`);
    return r;
  }

  /** The compressed bytes of one segment, as stored (not verified: see readVerifiedSegment). */
  async getSegment(digest: string): Promise<Buffer> {
    const r = this.segmentRange(digest);
    const buf = Buffer.allocUnsafe(r.length); // every byte read below, or refused
    let got = 0;
    while (got < r.length) {
      const n = fs.readSync(this.fd, buf, got, r.length - got, r.offset + got);
      if (n === 0) throw new CloudletError('Corrupt', `overlay file ${this.path} is truncated inside segment ${digest}`);
      got += n;
    }
    return buf;
  }

  /** A segment whose SHA-256 has been checked against its name. */
  async readVerifiedSegment(digest: string): Promise<Buffer> {
    const buf = await this.getSegment(digest);
    checkSegmentDigest(digest, buf);
    return buf;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function checkSegmentDigest(digest: string, buf: Buffer): void {
  checkSegmentName(digest, segmentName(buf));
}

/** Refuses a segment named `digest` whose bytes hash to `actual` (computed elsewhere: a worker thread) when the two differ. */
export function checkSegmentName(digest: string, actual: string): void {
  if (actual !== digest) {
    throw new CloudletError('Corrupt', `segment ${digest} is corrupt: its bytes hash to ${actual} (the overlay was damaged in storage or transit)`);
  }
}

/** A SegmentSource over a folder of files named by digest hex (e.g. a registry blob cache). */
export function segmentSourceFromDir(dir: string): SegmentSource {
  return {
    async getSegment(digest: string): Promise<Buffer> {
      if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new CloudletError('BadInput', `segment name ${JSON.stringify(digest)} is not sha256:<hex>`);
      return fs.promises.readFile(`${dir}/${digest.slice(7)}`);
    },
  };
}
