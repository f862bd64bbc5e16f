/**
 * What the destination holds, as one SHA-256 per 4 KiB chunk of one image (RAM or disk). It starts
 * as the base's digest list (the destination starts from its copy of the base), and every chunk
 * sent replaces its entry with the digest of the very bytes that were encoded, so "changed since
 * the last round" is exactly "differs from what the destination has", whatever the guest did
 * while a round was being read.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from '../overlay/format';

const READ_BLOCK = 8 << 20;

export class DirtyPageTracker {
  private readonly held: Buffer;

  constructor(baseDigests: Buffer, readonly chunks: number) {
    this.held = Buffer.alloc(chunks * 32);
    baseDigests.copy(this.held, 0, 0, Math.min(baseDigests.length, this.held.length));
  }

  /** Digest of `data` if it differs from what the destination holds (and records it as sent). */
  check(index: number, data: Buffer): Buffer | undefined {
    if (index >= this.chunks) throw new CloudletError('Internal', `chunk ${index} is outside the tracked image (${this.chunks} chunks)`);
    const digest = createHash('sha256').update(data).digest();
    if (this.held.compare(digest, 0, 32, index * 32, index * 32 + 32) === 0) return undefined;
    digest.copy(this.held, index * 32);
    return digest;
  }

  /** Reads a whole image file in large blocks and visits each changed page. */
  async scanFile(file: string, visit: (index: number, page: Buffer, digest: Buffer) => Promise<void>, signal?: AbortSignal): Promise<number> {
    const fd = fs.openSync(file, 'r');
    const block = Buffer.alloc(READ_BLOCK);
    let changed = 0;
    try {
      const size = Math.min(fs.fstatSync(fd).size, this.chunks * CHUNK_SIZE);
      for (let off = 0; off < size; off += READ_BLOCK) {
        if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
        const n = fs.readSync(fd, block, 0, Math.min(READ_BLOCK, size - off), off);
        for (let p = 0; p + CHUNK_SIZE <= n; p += CHUNK_SIZE) {
          const page = block.subarray(p, p + CHUNK_SIZE);
          const idx = (off + p) / CHUNK_SIZE;
          const d = this.check(idx, page);
          if (d) { changed++; await visit(idx, page, d); }
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return changed;
  }
}
