/**
 * The one-file export of a base: a plain POSIX ustar archive (readable with `tar tvf`), members
 * in a fixed order with manifest.json first. Sizes above 8 GiB use the GNU base-256 size field.
 * Written and read with positional I/O so a reader can seek to any member.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';

const BLOCK = 512;

function header(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 100) throw new Error(`tar member name too long: ${name}`);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);                   // mode
  h.write('0000000\0', 108);                   // uid
  h.write('0000000\0', 116);                   // gid
  if (size < 8 ** 11) h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  else { h[124] = 0x80; h.writeBigUInt64BE(BigInt(size), 128); } // GNU base-256: 0x80, then big-endian bytes 125..135
  h.write(Math.floor(mtime).toString(8).padStart(11, '0') + '\0', 136);
  h.write('        ', 148);                    // checksum placeholder
  h.write('0', 156);                           // regular file
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

function parseSize(h: Buffer): number {
  if (h[124] & 0x80) return Number(h.readBigUInt64BE(128));
  return parseInt(h.toString('ascii', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
}

export interface TarMember { name: string; offset: number; size: number }

/** Writes files (name -> path) into a new archive at `out`. */
export async function writeTar(out: string, members: { name: string; path: string }[], onProgress?: (done: number, total: number) => void): Promise<void> {
  const total = members.reduce((a, m) => a + fs.statSync(m.path).size, 0);
  let done = 0;
  const fh = await fs.promises.open(out, 'w');
  try {
    let pos = 0;
    const buf = Buffer.alloc(4 * 1024 * 1024);
    for (const m of members) {
      const size = fs.statSync(m.path).size;
      await fh.write(header(m.name, size, Date.now() / 1000), 0, BLOCK, pos);
      pos += BLOCK;
      const src = await fs.promises.open(m.path, 'r');
      try {
        let off = 0;
        while (off < size) {
          const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, size - off), off);
          if (!bytesRead) throw new CloudletError('Corrupt', `${m.path} shrank while exporting`);
          await fh.write(buf, 0, bytesRead, pos + off);
          off += bytesRead;
          done += bytesRead;
          onProgress?.(done, total);
        }
      } finally { await src.close(); }
      pos += Math.ceil(size / BLOCK) * BLOCK;
    }
    await fh.write(Buffer.alloc(2 * BLOCK), 0, 2 * BLOCK, pos); // end-of-archive marker
    await fh.truncate(pos + 2 * BLOCK);
  } finally { await fh.close(); }
}

/** Lists the members of an archive (and checks its headers). */
export async function readTarIndex(file: string): Promise<TarMember[]> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const out: TarMember[] = [];
    let pos = 0;
    const h = Buffer.alloc(BLOCK);
    for (;;) {
      const { bytesRead } = await fh.read(h, 0, BLOCK, pos);
      if (bytesRead < BLOCK) throw new CloudletError('Corrupt', `${file} is truncated (no end-of-archive marker)`);
      if (h.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
      if (sum !== parseInt(h.toString('ascii', 148, 156).replace(/\0.*$/, '').trim(), 8)) {
        throw new CloudletError('Corrupt', `${file}: damaged archive header at byte ${pos}`);
      }
      const name = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
      const size = parseSize(h);
      if (pos + BLOCK + size > fileSize) throw new CloudletError('Corrupt', `${file} is truncated inside ${name}`);
      out.push({ name, offset: pos + BLOCK, size });
      pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    }
    return out;
  } finally { await fh.close(); }
}

/** Copies one member out to `dest`, leaving holes for all-zero 4 KiB blocks (sparse images). */
export async function extractMember(file: string, m: TarMember, dest: string, onProgress?: (done: number, total: number) => void): Promise<void> {
  const src = await fs.promises.open(file, 'r');
  const dst = await fs.promises.open(dest, 'w');
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let off = 0;
    while (off < m.size) {
      const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, m.size - off), m.offset + off);
      if (!bytesRead) throw new CloudletError('Corrupt', `${file} is truncated inside ${m.name}`);
      for (let c = 0; c < bytesRead; c += 4096) {
        const piece = buf.subarray(c, Math.min(c + 4096, bytesRead));
        if (!isZero(piece)) await dst.write(piece, 0, piece.length, off + c);
      }
      off += bytesRead;
      onProgress?.(off, m.size);
    }
    await dst.truncate(m.size);
  } finally { await src.close(); await dst.close(); }
}

const ZERO = Buffer.alloc(4096);
function isZero(b: Buffer): boolean { return b.equals(ZERO.subarray(0, b.length)); }
