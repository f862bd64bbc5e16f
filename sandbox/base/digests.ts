/**
 * Per-chunk digests: SHA-256 of every 4 KiB chunk of a file, in order, 32 bytes each, no header
 * (a file of N bytes has ceil(N/4096) entries; a last partial chunk is hashed as it is, unpadded).
 * The same pass also gives the whole file's SHA-256. The overlay engineer reads these files directly.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';

export const CHUNK = 4096;
export const DIGEST_BYTES = 32;
const BLOCK = 4 * 1024 * 1024;

export interface FileDigests { bytes: number; sha256: string; chunks: Buffer }

/** Hashes a file once: whole-file SHA-256 and, when `chunks`, the per-4-KiB digest list. */
export async function hashFile(file: string, opts: { chunks?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<FileDigests> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const whole = crypto.createHash('sha256');
    const chunks = opts.chunks ? Buffer.alloc(Math.ceil(size / CHUNK) * DIGEST_BYTES) : Buffer.alloc(0);
    const buf = Buffer.alloc(BLOCK);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(BLOCK, size - off), off);
      if (bytesRead === 0) throw new CloudletError('Corrupt', `${file} ended early at byte ${off} of ${size}`);
      const data = buf.subarray(0, bytesRead);
      whole.update(data);
      if (opts.chunks) {
        for (let c = 0; c < bytesRead; c += CHUNK) {
          const d = crypto.createHash('sha256').update(data.subarray(c, Math.min(c + CHUNK, bytesRead))).digest();
          d.copy(chunks, ((off + c) / CHUNK) * DIGEST_BYTES);
        }
      }
      off += bytesRead;
      opts.onProgress?.(off, size);
    }
    return { bytes: size, sha256: whole.digest('hex'), chunks };
  } finally {
    await fh.close();
  }
}

/** Index of the first chunk whose digest differs, or -1. */
export function firstDifferentChunk(a: Buffer, b: Buffer): number {
  const n = Math.max(a.length, b.length) / DIGEST_BYTES;
  for (let i = 0; i < n; i++) {
    const o = i * DIGEST_BYTES;
    if (o + DIGEST_BYTES > a.length || o + DIGEST_BYTES > b.length || a.compare(b, o, o + DIGEST_BYTES, o, o + DIGEST_BYTES) !== 0) return i;
  }
  return -1;
}
