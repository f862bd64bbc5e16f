/**
 * Reads a file's 4 KiB chunks in spans. The overlay scan visits chunks in ascending order, and one
 * read of a run of nearby chunks costs far less than one read per chunk: a system call took 2-50 µs
 * on the 2-core test machine (more under load), and the realistic pair's scan made ~130 k of them.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE } from './format';

export class SpanReader {
  private readonly buf: Buffer;
  private start = 0; // file offset of buf[0]
  private held = 0;  // bytes of buf holding file data

  /** `fileSize`: bytes readable; `maxChunks`: the largest span read at once. */
  constructor(private readonly fd: number, private readonly fileSize: number, private readonly name: string, readonly maxChunks = 256) {
    this.buf = Buffer.allocUnsafe(maxChunks * CHUNK_SIZE);
  }

  /**
   * The 4096 bytes at `pos` (a view, valid until the next call), or undefined when they are not all
   * inside the file. When they are not held, reads `chunks` chunks from `pos` (at least 1, at most
   * maxChunks, cut at the end of the file).
   */
  chunk(pos: number, chunks = this.maxChunks): Buffer | undefined {
    if (pos < 0 || pos + CHUNK_SIZE > this.fileSize) return undefined;
    if (pos < this.start || pos + CHUNK_SIZE > this.start + this.held) {
      const want = Math.min(Math.max(1, Math.min(chunks, this.maxChunks)) * CHUNK_SIZE, this.fileSize - pos);
      let got = 0;
      while (got < want) {
        const r = fs.readSync(this.fd, this.buf, got, want - got, pos + got);
        if (r === 0) throw new CloudletError('Corrupt', `${this.name} ended early at byte ${pos + got}`);
        got += r;
      }
      this.start = pos; this.held = got;
    }
    const at = pos - this.start;
    return this.buf.subarray(at, at + CHUNK_SIZE);
  }
}
