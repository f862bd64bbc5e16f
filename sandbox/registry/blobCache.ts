/**
 * Content-addressed cache of pulled blobs: <dir>/sha256/<hex>. A blob enters only after its digest
 * was verified (written to a temp name, renamed into place), and is verified again when read, so a
 * damaged entry is dropped and fetched anew instead of being used.
 *
 * Scopes (a daemon's projects): knowing a digest must not be a way to read a blob. A scoped cache
 * serves only the blobs a request of the same scope downloaded itself from a registry, kept as hard
 * links <dir>/scopes/<sha256(scope), 32 hex>/sha256/<hex> to the shared entry: one copy on disk, one
 * download per scope. A registry's word ("the manifest lists it", "HEAD says 200") proves nothing:
 * the registry may be the caller's own. An unscoped cache (the CLI, one user) reads the shared entries.
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

/** A scope's folder name: fixed length and alphabet whatever the scope (a project ID) holds. */
export function scopeDirName(scope: string): string {
  return crypto.createHash('sha256').update(scope).digest('hex').slice(0, 32);
}

export class BlobCache {
  /** Where this cache's entries are read: the scope's links, or the shared entries. */
  private readonly readDir: string;

  constructor(readonly dir: string, readonly scope?: string) {
    this.readDir = scope === undefined ? dir : path.join(dir, 'scopes', scopeDirName(scope));
  }

  /** The entry this cache reads for `digest` (in a scoped cache, the scope's link). */
  pathOf(digest: string): string {
    return path.join(this.readDir, 'sha256', digestHex(digest));
  }

  private sharedPathOf(digest: string): string {
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

  /**
   * Stores bytes already verified against `digest` (checked again here: cheap, and the cache must never lie).
   * Scoped: the shared entry is written when missing, then linked into the scope (the bytes are equal: same digest).
   */
  async put(digest: string, data: Buffer): Promise<void> {
    if (sha256Digest(data) !== digest) throw new Error(`blob cache: refusing to store data under the wrong digest ${digest}`);
    const shared = this.sharedPathOf(digest);
    if (this.scope === undefined || !fs.existsSync(shared)) await writeAtomically(shared, (tmp) => fs.promises.writeFile(tmp, data));
    if (this.scope === undefined) return;
    try {
      await writeAtomically(this.pathOf(digest), (tmp) => fs.promises.link(shared, tmp));
    } catch {
      // The shared entry went meanwhile (or links are refused): the scope keeps its own copy.
      await writeAtomically(this.pathOf(digest), (tmp) => fs.promises.writeFile(tmp, data));
    }
  }

  /** Digests of every complete entry this cache reads (for tests and `cloudlet registry cache`). */
  list(): string[] {
    const d = path.join(this.readDir, 'sha256');
    if (!fs.existsSync(d)) return [];
    return fs.readdirSync(d).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }
}

/** Makes `file` by writing a temp name next to it and renaming it into place (readers never see half a file). */
async function writeAtomically(file: string, make: (tmp: string) => Promise<void>): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  try {
    await make(tmp);
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}
