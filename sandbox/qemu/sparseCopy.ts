/**
 * A copy of a sparse raw image that leaves out chunks the caller writes itself. A synthesis writes
 * every RAM page its overlay lists (on the realistic bench pair 92 k pages, 35 k of them zero pages
 * over base data), so its launch RAM needs only the base's data outside them: 38.9 k of the base's
 * 86.5 k data pages there. The pages left out stay holes of the fresh sparse file (zeros), so the
 * overlay's zero pages need no write, and the copy never touches a page the synthesis writes.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { CloudletError } from '../common/errors';
import { qemuImgBinary } from './host';
import { run } from './run';

export interface Extent { start: number; length: number }

/** The data extents of a raw file, ascending (qemu-img map: SEEK_DATA / SEEK_HOLE). */
export async function dataExtents(file: string): Promise<Extent[]> {
  const size = fs.statSync(file).size;
  const r = await run(qemuImgBinary(), ['map', '--output=json', '-f', 'raw', path.resolve(file)]);
  let map: unknown;
  try { map = JSON.parse(r.stdout); } catch { map = undefined; }
  if (!Array.isArray(map)) throw new CloudletError('Internal', `qemu-img map of ${file} gave no extent list`);
  const out: Extent[] = [];
  for (const e of map as Array<Record<string, unknown>>) {
    const { start, length, data } = e ?? {};
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || (start as number) < 0 || (length as number) < 0 || (start as number) + (length as number) > size) {
      throw new CloudletError('Internal', `qemu-img map of ${file} gave an extent outside the file: ${JSON.stringify(e)}`);
    }
    if (data === true && (length as number) > 0) out.push({ start: start as number, length: length as number });
  }
  return out;
}

/**
 * The byte ranges to copy: `extents` (widened to whole chunks, cut at `fileSize`) without the
 * chunks set in `leaveOut` (chunk i: bytes i * chunkSize .. (i + 1) * chunkSize), merged, ascending.
 */
export function rangesOutside(extents: Extent[], leaveOut: Uint8Array, chunkSize: number, fileSize: number): Extent[] {
  const out: Extent[] = [];
  const sorted = [...extents].sort((a, b) => a.start - b.start);
  let from = -1, to = -1; // the range being gathered: chunks from..to-1
  const close = () => {
    if (from < 0) return;
    const start = from * chunkSize;
    out.push({ start, length: Math.min(to * chunkSize, fileSize) - start });
    from = -1;
  };
  let next = 0; // first chunk not yet visited (extents may overlap once widened)
  for (const e of sorted) {
    const first = Math.max(next, Math.floor(e.start / chunkSize));
    const end = Math.min(Math.ceil((e.start + e.length) / chunkSize), Math.ceil(fileSize / chunkSize));
    // A run at a time (indexOf is native): a 1 GiB RAM has 262,144 chunks.
    for (let c = first; c < end;) {
      if (leaveOut[c] === 1) {
        close();
        const kept = leaveOut.indexOf(0, c); // none: the chunks past the marks are not left out
        c = Math.min(end, kept < 0 ? leaveOut.length : kept);
        continue;
      }
      let stop = leaveOut.indexOf(1, c);
      if (stop < 0 || stop > end) stop = end;
      if (from >= 0 && c === to) to = stop;
      else { close(); from = c; to = stop; }
      c = stop;
    }
    next = Math.max(next, end);
  }
  close();
  return out;
}

// The copy runs on a thread of its own with blocking reads and writes: a synthesis keeps the main
// thread busy writing segments, and an async copy advanced only when its event loop turned.
const COPY_WORKER = `
const { parentPort, workerData: { src, dst, ranges, pieceBytes } } = require('worker_threads');
const fs = require('fs');
let from = -1, to = -1;
try {
  from = fs.openSync(src, 'r'); to = fs.openSync(dst, 'r+');
  const buf = Buffer.allocUnsafe(pieceBytes);
  for (let i = 0; i < ranges.length; i += 2) {
    for (let pos = ranges[i], end = ranges[i] + ranges[i + 1]; pos < end;) {
      const want = Math.min(pieceBytes, end - pos);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(from, buf, got, want - got, pos + got);
        if (n === 0) throw new Error(src + ' ended at byte ' + (pos + got) + ' while it was copied');
        got += n;
      }
      for (let put = 0; put < got;) put += fs.writeSync(to, buf, put, got - put, pos + put);
      pos += got;
    }
  }
  parentPort.postMessage({ ok: true });
} catch (e) {
  parentPort.postMessage({ ok: false, message: e.message, code: e.code });
} finally {
  if (from >= 0) fs.closeSync(from);
  if (to >= 0) fs.closeSync(to);
}
`;

/** Copies `ranges` of `src` to the same offsets of `dst` (an existing file), a piece at a time. */
export function copyRanges(src: string, dst: string, ranges: Extent[], pieceBytes = 1 << 20): Promise<void> {
  const flat = new Float64Array(ranges.length * 2);
  ranges.forEach((r, i) => { flat[2 * i] = r.start; flat[2 * i + 1] = r.length; });
  return new Promise((resolve, reject) => {
    const worker = new Worker(COPY_WORKER, { eval: true, execArgv: [], workerData: { src, dst, ranges: flat, pieceBytes } });
    let result: { ok: boolean; message?: string; code?: string } | undefined;
    worker.on('message', (m) => { result = m; });
    worker.on('error', (e) => { result ??= { ok: false, message: e.message }; });
    worker.on('exit', () => {
      if (result?.ok) return resolve();
      reject(Object.assign(new Error(`copying ${src}: ${result?.message ?? 'the copy thread stopped'}`), result?.code ? { code: result.code } : {}));
    });
  });
}
