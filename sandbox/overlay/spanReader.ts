/**
 * Reads a file's 4 KiB chunks in spans. The overlay scan visits chunks in ascending order, and one
 * read of a run of nearby chunks costs far less than one read per chunk: a system call took 2-50 µs
 * on the 2-core test machine (more under load), and the realistic pair's scan made ~130 k of them.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { CHUNK_SIZE as FORMAT_CHUNK_SIZE } from './format';

// A local copy: run from the TypeScript sources (tsx: the bench's daemon, tests) an imported binding
// is read through a getter of its module's exports (two for a re-export) on every use in the hot loops.
const CHUNK_SIZE = FORMAT_CHUNK_SIZE;

export class SpanReader {
  private readonly buf: Buffer;
  private start = 0; // file offset of buf[0]
  private held = 0;  // bytes of buf holding file data

  /** `fileSize`: bytes readable; `maxChunks`: the largest span read at once. */
  constructor(private readonly fd: number, private fileSize: number, private readonly name: string, readonly maxChunks = 256) {
    this.buf = Buffer.allocUnsafe(maxChunks * CHUNK_SIZE);
  }

  /**
   * Drops what is held (the file was written since) and takes the file's new size: a reader kept
   * for a file being written, instead of a new one (and a new span buffer to fault in) per pass.
   */
  forget(fileSize = this.fileSize): void {
    this.start = 0; this.held = 0;
    this.fileSize = fileSize;
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

/**
 * For reads of one file at `positions` (byte offsets, in the order they are made; NaN: a read of
 * something else), how many chunks each read begins of a row the next reads of that file continue
 * (offset, offset + 4096, ...), at most `max`: the span to read there (SpanReader.chunk's `chunks`),
 * so that no chunk is read that nothing asked for. Synthesis reads base chunks for ~24 k records of
 * the realistic bench pair, most of them not in rows: spans of 32 chunks read 1.9 GB for ~0.1 GB used.
 */
export function runLengths(positions: ArrayLike<number>, max: number): Uint32Array {
  const runs = new Uint32Array(positions.length);
  let nextPos = NaN, nextRun = 0;
  for (let i = positions.length - 1; i >= 0; i--) {
    const p = positions[i];
    if (Number.isNaN(p)) continue;
    runs[i] = p + CHUNK_SIZE === nextPos ? Math.min(nextRun + 1, max) : 1;
    nextPos = p; nextRun = runs[i];
  }
  return runs;
}
