/**
 * Disk images given by a user (a distribution's cloud image, an exported appliance): find out what
 * the file is with qemu-img, refuse what is not a self-contained bootable disk, and convert it to
 * the raw disk of a base bundle. The file is hostile until checked: a qcow2 or vmdk can name other
 * files of the host (backing files, extents) that qemu-img would otherwise read.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { qemuImgBinary } from '../qemu/host';
import { run } from '../qemu/run';

export const IMAGE_FORMATS = ['qcow2', 'raw', 'vmdk'] as const;
export type ImageFormat = typeof IMAGE_FORMATS[number];
const MAX_VIRTUAL_BYTES = 2 * 1024 ** 4;

export interface ImageInfo { file: string; format: ImageFormat; virtualBytes: number; fileBytes: number }

interface QemuImgInfo {
  format?: string;
  'virtual-size'?: number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { extents?: { filename?: string }[]; 'data-file'?: string; corrupt?: boolean } };
}

/** True when the first sector ends with the boot signature (an MBR, or GPT's protective MBR). */
function hasBootSector(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(512);
    return fs.readSync(fd, b, 0, 512, 0) === 512 && b[510] === 0x55 && b[511] === 0xaa;
  } finally { fs.closeSync(fd); }
}

/** What the image is, or a clear refusal: unknown format, not bootable, not self-contained, corrupt. */
export async function inspectImage(given: string, signal?: AbortSignal): Promise<ImageInfo> {
  // Absolute, so qemu-img never reads the name as a protocol or a json: image description.
  const file = path.resolve(given);
  let st: fs.Stats;
  try { st = fs.statSync(file); } catch { throw new CloudletError('NotFound', `disk image ${file} does not exist`); }
  if (!st.isFile()) throw new CloudletError('BadInput', `${file} is not a file`);
  const name = path.basename(file);
  const r = await run(qemuImgBinary(), ['info', '--output=json', file], { allowFail: true, signal });
  if (r.code !== 0) {
    throw new CloudletError('Corrupt', `${name} cannot be read as a disk image: ${r.stderr.trim().split('\n').pop() ?? ''}`);
  }
  let info: QemuImgInfo;
  try { info = JSON.parse(r.stdout) as QemuImgInfo; } catch { throw new CloudletError('Internal', `qemu-img info gave no JSON for ${name}`); }
  const format = info.format ?? '';
  if (!(IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw new CloudletError('BadInput', `${name} is a ${format || 'unknown'} image: give a qcow2, raw or vmdk disk image`, { hint: `convert it first, e.g. qemu-img convert -O qcow2 ${name} out.qcow2` });
  }
  const virtualBytes = info['virtual-size'] ?? 0;
  if (!Number.isSafeInteger(virtualBytes) || virtualBytes <= 0 || virtualBytes > MAX_VIRTUAL_BYTES) {
    throw new CloudletError('BadInput', `${name}: a disk of ${virtualBytes} bytes is not supported (at most 2 TiB)`);
  }
  if (info['backing-filename'] || info['full-backing-filename']) {
    throw new CloudletError('BadInput', `${name} is a layer over another image (${info['backing-filename']}): give a self-contained image`, { hint: `flatten it first: qemu-img convert -O qcow2 ${name} flat.qcow2` });
  }
  const data = info['format-specific']?.data;
  if (data?.['data-file']) throw new CloudletError('BadInput', `${name} keeps its data in another file (${data['data-file']}): give a self-contained image`);
  if (format === 'vmdk') {
    const own = path.resolve(file);
    const others = (data?.extents ?? []).map((e) => e.filename).filter((f): f is string => !!f && path.resolve(path.dirname(own), f) !== own);
    if (others.length) throw new CloudletError('BadInput', `${name} is a vmdk descriptor that reads other files (${others.join(', ')}): give a monolithic vmdk`, { hint: `qemu-img convert -O qcow2 ${name} one.qcow2` });
  }
  if (format === 'qcow2') {
    if (data?.corrupt) throw new CloudletError('Corrupt', `${name}: qcow2 marks itself corrupt`);
    const c = await run(qemuImgBinary(), ['check', '-f', 'qcow2', file], { allowFail: true, signal });
    // 0: clean; 3: leaked clusters only (harmless, common in downloaded images); anything else: damaged.
    if (c.code !== 0 && c.code !== 3) {
      // qemu-img check: a count on stdout ("3 errors were found on the image."), the errors on stderr.
      const count = /\d+ errors? (were|was) found on the image/.exec(c.stdout)?.[0];
      const first = c.stderr.split('\n').find((l) => /^ERROR/.test(l.trim()))?.trim();
      const why = [count, first].filter(Boolean).join('; ') || `${c.stdout}\n${c.stderr}`.trim().split('\n').filter(Boolean).slice(0, 4).join('; ');
      throw new CloudletError('Corrupt', `${name} is a damaged qcow2 image: ${why}`);
    }
  }
  if (format === 'raw' && !hasBootSector(file)) {
    throw new CloudletError('BadInput', `${name} is neither a qcow2 or vmdk image nor a raw disk with a partition table (no boot sector)`, { hint: 'give a bootable disk image: qcow2, vmdk, or raw with an MBR or GPT partition table' });
  }
  return { file, format: format as ImageFormat, virtualBytes, fileBytes: st.size };
}

/** Writes the image as a sparse raw disk of `diskBytes` (at least its own size; grown when larger). */
export async function convertToRaw(img: ImageInfo, out: string, o: { diskBytes?: number; signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<number> {
  const size = o.diskBytes ?? img.virtualBytes;
  if (size < img.virtualBytes) {
    throw new CloudletError('BadInput', `the disk size ${size} bytes is smaller than the image's own ${img.virtualBytes} bytes`, { hint: 'give a larger --disk, or leave it out' });
  }
  const r = await run(qemuImgBinary(), ['convert', '-p', '-f', img.format, '-O', 'raw', '-S', '4k', img.file, out], {
    allowFail: true, signal: o.signal,
    onLine: (l) => { const m = /\((\d+(?:\.\d+)?)\/100%\)/.exec(l); if (m) o.onProgress?.(Number(m[1]), 100); },
  });
  if (r.code !== 0) {
    fs.rmSync(out, { force: true });
    throw new CloudletError('Corrupt', `${path.basename(img.file)} could not be converted: ${r.stderr.trim().split('\n').pop() ?? `qemu-img exit ${r.code}`}`);
  }
  if (size > img.virtualBytes) fs.truncateSync(out, size); // cloud-init's growpart grows the partition to fill it
  return size;
}
