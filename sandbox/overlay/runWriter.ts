/**
 * Gathers 4 KiB writes at consecutive file offsets into one writev. Synthesis writes each changed
 * page and disk chunk on its own: one system call per 4 KiB was most of building the realistic
 * bench pair's launch files (~140 k writes), while its chunks come in long ascending runs.
 */
import * as fs from 'fs';
import { CHUNK_SIZE as FORMAT_CHUNK_SIZE } from './format';

// A local copy: run from the TypeScript sources (tsx: the bench's daemon, tests) an imported binding
// is read through a getter of its module's exports (two for a re-export) on every use in the hot loops.
const CHUNK_SIZE = FORMAT_CHUNK_SIZE;

export class RunWriter {
  private bufs: Uint8Array[] = [];
  private start = 0;
  private next = -1;
  private readonly slab: Buffer;
  private used = 0; // chunks of the slab holding copies queued in this run

  constructor(private readonly fd: number, private readonly maxChunks = 256) {
    this.slab = Buffer.allocUnsafe(maxChunks * CHUNK_SIZE);
  }

  /**
   * Queues 4096 bytes for file offset `pos`. With `copy` false the caller's buffer is kept until the
   * run is written and must not change meanwhile; with `copy` true the bytes are copied now.
   */
  write(pos: number, data: Uint8Array, copy: boolean): void {
    if (pos !== this.next || this.bufs.length >= this.maxChunks || (copy && this.used >= this.maxChunks)) this.flush();
    if (!this.bufs.length) this.start = pos;
    if (copy) {
      const slot = this.slab.subarray(this.used * CHUNK_SIZE, (this.used + 1) * CHUNK_SIZE);
      slot.set(data.subarray(0, CHUNK_SIZE));
      this.used++;
      data = slot;
    }
    this.bufs.push(data);
    this.next = pos + CHUNK_SIZE;
  }

  /** Writes the queued run. Call before reading the file back and before closing it. */
  flush(): void {
    const bufs = this.bufs;
    this.bufs = []; this.used = 0; this.next = -1;
    if (!bufs.length) return;
    let pos = this.start, i = 0;
    // writev writes at most IOV_MAX (1024) buffers and may stop short: go on from where it stopped.
    while (i < bufs.length) {
      let n = fs.writevSync(this.fd, bufs.slice(i, i + 1024), pos);
      if (n <= 0) throw new Error(`writev at ${pos} wrote nothing`);
      pos += n;
      while (i < bufs.length && n >= bufs[i].length) { n -= bufs[i].length; i++; }
      for (let off = n; n > 0 && off < bufs[i].length;) { const w = fs.writeSync(this.fd, bufs[i], off, bufs[i].length - off, pos); off += w; pos += w; }
      if (n > 0) i++;
    }
  }
}
