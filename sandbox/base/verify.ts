/**
 * Checking a bundle's files against its manifest.
 * - full: every file's SHA-256, and every 4 KiB chunk of disk and RAM against the digest lists
 *   (import and `base verify`). Names the file, and the first bad chunk for disk/RAM.
 * - quick (before every resume): sizes, plus a full check of any file whose inode, size, mtime or
 *   ctime changed since the last full check (recorded in .verified.json). Any write to a file
 *   changes its ctime, which user space cannot set back, so tampering is caught without re-hashing
 *   gigabytes on every resume; silent media corruption is left to `base verify`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { firstDifferentChunk, hashFile, CHUNK } from './digests';
import type { BaseManifest, BundleFileName } from './manifest';

const STAMP = '.verified.json';
type StatKey = { ino: number; size: number; mtimeMs: number; ctimeMs: number };

function statKey(file: string): StatKey {
  const s = fs.statSync(file);
  return { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
}

export function writeVerifiedStamp(dir: string, m: BaseManifest): void {
  const stamp: Record<string, StatKey> = {};
  for (const name of Object.keys(m.files)) stamp[name] = statKey(path.join(dir, name));
  fs.writeFileSync(path.join(dir, STAMP), JSON.stringify(stamp));
}

function readStamp(dir: string): Record<string, StatKey> {
  try { return JSON.parse(fs.readFileSync(path.join(dir, STAMP), 'utf8')) as Record<string, StatKey>; } catch { return {}; }
}

function checkSize(dir: string, name: string, expected: number, what: string): void {
  const file = path.join(dir, name);
  let size: number;
  try { size = fs.statSync(file).size; } catch {
    throw new CloudletError('Corrupt', `${what}: ${name} is missing`, { hint: 're-import or re-create the base' });
  }
  if (size !== expected) {
    throw new CloudletError('Corrupt', `${what}: ${name} is ${size < expected ? 'truncated' : 'too long'} (${size} bytes, manifest says ${expected})`, {
      hint: 're-import or re-create the base',
    });
  }
}

/** Checks one file fully; for disk.raw/ram.raw also chunk by chunk against the digest list. */
async function verifyFile(dir: string, m: BaseManifest, name: BundleFileName, what: string, onProgress?: (file: string, done: number, total: number) => void): Promise<void> {
  const entry = m.files[name]!;
  checkSize(dir, name, entry.bytes, what);
  const withChunks = name === 'disk.raw' || name === 'ram.raw';
  const d = await hashFile(path.join(dir, name), { chunks: withChunks, onProgress: (a, b) => onProgress?.(name, a, b) });
  if (d.sha256 === entry.sha256) return;
  if (withChunks) {
    const listName = name === 'disk.raw' ? 'disk.digests' : 'ram.digests';
    const list = fs.readFileSync(path.join(dir, listName));
    const bad = firstDifferentChunk(d.chunks, list);
    if (bad >= 0) {
      throw new CloudletError('Corrupt', `${what}: ${name} does not match ${listName} at chunk ${bad} (byte offset ${bad * CHUNK})`, { hint: 're-import or re-create the base' });
    }
  }
  throw new CloudletError('Corrupt', `${what}: ${name} does not match its SHA-256 in manifest.json`, { hint: 're-import or re-create the base' });
}

export async function verifyBundleFull(dir: string, m: BaseManifest, what: string, onProgress?: (file: string, done: number, total: number) => void): Promise<void> {
  // Digest lists first: the chunk comparison of disk/RAM relies on them.
  const order: BundleFileName[] = ['disk.digests', 'ram.digests', 'state.bin', 'kernel', 'initrd', 'disk.raw', 'ram.raw'];
  for (const name of order) if (m.files[name]) checkSize(dir, name, m.files[name]!.bytes, what);
  for (const name of order) if (m.files[name]) await verifyFile(dir, m, name, what, onProgress);
  writeVerifiedStamp(dir, m);
}

export async function verifyBundleQuick(dir: string, m: BaseManifest, what: string): Promise<{ rehashed: string[] }> {
  const stamp = readStamp(dir);
  const rehashed: string[] = [];
  const names = Object.keys(m.files) as BundleFileName[];
  for (const name of names) checkSize(dir, name, m.files[name]!.bytes, what);
  for (const name of ['disk.digests', 'ram.digests', ...names.filter((n) => !n.endsWith('.digests'))] as BundleFileName[]) {
    const now = statKey(path.join(dir, name));
    const was = stamp[name];
    if (was && was.ino === now.ino && was.size === now.size && was.mtimeMs === now.mtimeMs && was.ctimeMs === now.ctimeMs) continue;
    await verifyFile(dir, m, name, what);
    rehashed.push(name);
  }
  if (rehashed.length) writeVerifiedStamp(dir, m);
  return { rehashed };
}
