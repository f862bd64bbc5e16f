/**
 * Content-addressed cache of pulled blobs: <dir>/sha256/<hex>. A blob enters only after its digest
 * was verified (written to a temp name, renamed into place), and is verified again when read, so a
 * damaged entry is dropped and fetched anew instead of being used.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { storePaths } from '../common/paths';
import { digestHex, sha256Digest } from './digest';

/** Default cache folder in the store: <store>/cache/blobs. */
export function defaultBlobCacheDir(root?: string): string {
  return path.join(storePaths(root).root, 'cache', 'blobs');
}

export class BlobCache {
  constructor(readonly dir: string) {}

  pathOf(digest: string): string {
    return path.join(this.dir, 'sha256', digestHex(digest));
  }

  /** The verified bytes, or undefined when absent (or damaged, which is removed). */
  async get(digest: string): Promise<Buffer | undefined> {
    const p = this.pathOf(digest);
    let data: Buffer;
    try {
      data = await fs.promises.readFile(p);
    } catch {
      return undefined;
    }
    if (sha256Digest(data) === digest) return data;
    await fs.promises.rm(p, { force: true });
    return undefined;
  }

  has(digest: string): boolean {
    return fs.existsSync(this.pathOf(digest));
  }

  /** Stores bytes already verified against `digest` (checked again here: cheap, and the cache must never lie). */
  async put(digest: string, data: Buffer): Promise<void> {
    if (sha256Digest(data) !== digest) throw new Error(`blob cache: refusing to store data under the wrong digest ${digest}`);
    const p = this.pathOf(digest);
    await fs.promises.mkdir(path.dirname(p), { recursive: true });
    const tmp = `${p}.${crypto.randomBytes(6).toString('hex')}.tmp`;
    await fs.promises.writeFile(tmp, data);
    await fs.promises.rename(tmp, p);
  }

  /** Digests of every complete entry (for tests and `cloudlet registry cache`). */
  list(): string[] {
    const d = path.join(this.dir, 'sha256');
    if (!fs.existsSync(d)) return [];
    return fs.readdirSync(d).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }
}
