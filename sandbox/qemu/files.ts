/** File helpers for VM images: cheap private copies and whole-or-nothing writes. */
import * as fs from 'fs';
import { run } from './run';

/**
 * Private copy of a (possibly sparse) image: a reflink where the filesystem can (btrfs, xfs),
 * else a copy that keeps holes (cp uses SEEK_DATA/SEEK_HOLE and copy_file_range).
 */
export async function cloneFile(src: string, dst: string): Promise<void> {
  try {
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_FICLONE_FORCE);
    return;
  } catch { /* no reflink here */ }
  await run('cp', ['--reflink=auto', '--sparse=always', src, dst]);
}

/**
 * As cloneFile, in two steps: `dst` exists at its full size (sparse) when this returns, so QEMU can
 * map it already; the returned promise resolves once it holds `src`'s bytes. (dd conv=notrunc:
 * the file QEMU mapped is never truncated; conv=sparse leaves src's zero blocks as holes.)
 */
export function cloneFileInBackground(src: string, dst: string): Promise<void> {
  try {
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_FICLONE_FORCE);
    return Promise.resolve();
  } catch { /* no reflink here */ }
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, fs.statSync(src).size);
  return run('dd', [`if=${src}`, `of=${dst}`, 'bs=1M', 'conv=notrunc,sparse', 'status=none']).then(() => undefined);
}

/** Writes a file via a temporary name and rename, so readers see the old or the new whole file. */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}
