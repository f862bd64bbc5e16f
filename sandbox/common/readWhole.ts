/** A file's bytes read off the event loop in as few reads as the kernel allows. */
import * as fs from 'fs';
import { CloudletError } from './errors';

/**
 * fs.promises.readFile reads 512 KiB per turn of the event loop (80 turns for the base's 40 MB of
 * digests), and each turn waits behind whatever else holds the loop (a handoff's round 0 writes).
 */
export async function readWhole(file: string): Promise<Buffer> {
  const f = await fs.promises.open(file, 'r');
  try {
    const out = Buffer.allocUnsafe((await f.stat()).size);
    for (let at = 0; at < out.length;) {
      const { bytesRead } = await f.read(out, at, out.length - at, at);
      if (bytesRead === 0) throw new CloudletError('Internal', `${file} ended at ${at} of ${out.length} bytes`);
      at += bytesRead;
    }
    return out;
  } finally { await f.close(); }
}
