/**
 * The RAM compare of a handoff round on worker threads: the image is cut into one range per worker,
 * each worker reads its range (1 MiB reads) and compares it with the copy of what the destination
 * holds (a SharedArrayBuffer, read-only for the workers while a scan runs), and answers with the
 * indices of the pages that differ. The daemon's own thread stays free meanwhile: in the paused
 * round the device state streams in while the workers compare. The workers never change the copy;
 * the caller reads each listed page again and records it as sent (ShadowPageTracker), so a worker
 * failure leaves nothing half-done and the in-thread compare can take over (fallback).
 */
import { Worker } from 'worker_threads';
import { CloudletError } from '../common/errors';

/** Same span logic as the in-thread compare: 64 KiB memcmp first, single pages only inside a span that differs. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const fs = require('fs');
const PAGE = 4096, SPAN = 64 << 10, BLOCK = 1 << 20;
const held = Buffer.from(workerData.shadow);
const block = Buffer.allocUnsafe(BLOCK);
parentPort.on('message', (m) => {
  let fd;
  try {
    fd = fs.openSync(m.file, 'r');
    const out = [];
    for (let off = m.from; off < m.to; off += BLOCK) {
      const want = Math.min(BLOCK, m.to - off);
      let n = 0;
      while (n < want) { const r = fs.readSync(fd, block, n, want - n, off + n); if (r === 0) break; n += r; }
      const whole = n - (n % PAGE);
      for (let span = 0; span < whole; span += SPAN) {
        const end = Math.min(span + SPAN, whole);
        if (held.compare(block, span, end, off + span, off + end) === 0) continue;
        for (let p = span; p < end; p += PAGE) {
          if (held.compare(block, p, p + PAGE, off + p, off + p + PAGE) !== 0) out.push((off + p) / PAGE);
        }
      }
      if (n < want) break;
    }
    parentPort.postMessage({ id: m.id, changed: Int32Array.from(out) });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
});
`;

export class ParallelPageCompare {
  private readonly workers: Worker[] = [];
  private nextId = 1;
  private broken?: string;

  /** `shadow` is the SharedArrayBuffer behind the tracker's copy; `threads` workers start now (ahead of the scans). */
  constructor(shadow: SharedArrayBuffer, readonly threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { shadow } });
      w.on('error', (e) => { this.broken ??= String(e); });
      w.on('exit', (code) => { this.broken ??= `compare worker exited (${code})`; });
      w.unref();
      this.workers.push(w);
    }
  }

  /** Why the workers cannot be used (then the caller compares in its own thread), if they cannot. */
  get unusable(): string | undefined { return this.broken; }

  /** Indices of the pages of `file` (up to `size` bytes) that differ from the copy, in ascending order. */
  async changedPages(file: string, size: number, pageSize: number): Promise<Int32Array[]> {
    if (this.broken) throw new CloudletError('Internal', `compare workers unusable: ${this.broken}`);
    const pages = Math.floor(size / pageSize);
    const per = Math.ceil(pages / this.workers.length);
    const jobs = this.workers.map((w, i) => {
      const from = Math.min(pages, i * per) * pageSize, to = Math.min(pages, (i + 1) * per) * pageSize;
      if (from >= to) return Promise.resolve(new Int32Array(0));
      const id = this.nextId++;
      return new Promise<Int32Array>((resolve, reject) => {
        const onMsg = (m: { id: number; changed?: Int32Array; error?: string }) => {
          if (m.id !== id) return;
          done();
          if (m.error !== undefined) reject(new CloudletError('Internal', `compare worker: ${m.error}`));
          else resolve(m.changed!);
        };
        const onErr = (e: Error) => { done(); reject(e); };
        const onExit = (code: number) => { done(); reject(new CloudletError('Internal', `compare worker exited (${code})`)); };
        const done = () => { w.off('message', onMsg); w.off('error', onErr); w.off('exit', onExit); w.unref(); };
        w.on('message', onMsg); w.on('error', onErr); w.on('exit', onExit);
        w.ref();
        w.postMessage({ id, file, from, to });
      });
    });
    try {
      return await Promise.all(jobs);
    } catch (e) {
      this.broken ??= String(e);
      throw e;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate().catch(() => undefined)));
  }
}
