/**
 * zstd in the calling thread, with the same results as SegmentCompressor (bytes, their SHA-256
 * name, the name of the bytes before compression), for the paused round only: its few pages and
 * the device state (~1 MB) compress in about a millisecond, while a trip to a worker thread and
 * back waits for two more thread wake-ups, which on a loaded host took tens of milliseconds of the
 * downtime each (bench/RESULTS.md, handoff).
 */
import { createHash } from 'crypto';
import { Compressor, Decompressor } from 'zstd-napi';
import type { CompressedSegment } from '../overlay/segmentCompressor';

/** Paused rounds whose segments are at most this large together are decompressed in-thread. */
export const INLINE_ROUND_BYTES = 8 << 20;

export class InlineZstd {
  readonly threads = 1;
  private readonly cmp = new Compressor();
  private readonly dec = new Decompressor();
  private level?: number;

  async compress(data: Buffer, level: number): Promise<CompressedSegment> {
    if (this.level !== level) { this.cmp.setParameters({ compressionLevel: level, contentSizeFlag: true, checksumFlag: false }); this.level = level; }
    const out = this.cmp.compress(data);
    // The name of the bytes before compression only when asked: a handoff round's entries carry none.
    return { data: out, digest: `sha256:${sha256(out)}`, get rawDigest() { return `sha256:${sha256(data)}`; } };
  }

  async decompressNamed(data: Buffer): Promise<{ data: Buffer; rawDigest: string }> {
    const out = this.dec.decompress(data);
    return { data: out, get rawDigest() { return `sha256:${sha256(out)}`; } };
  }
}

function sha256(b: Buffer): string { return createHash('sha256').update(b).digest('hex'); }
