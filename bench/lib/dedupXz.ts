/**
 * The "dedup + xz -9" peer of bench overlay (issue 13): the same changed chunks our overlay
 * considers (RAM pages whose SHA-256 differs from the base page at the same index; disk chunks the
 * launch layer maps that differ from the base), each 4 KiB chunk looked up by SHA-256 among zero,
 * base RAM, base disk and the chunks already kept; only unique chunks keep their bytes. Disk first,
 * then RAM (page cache then dedups against the new disk chunks, as in ours). The result is the
 * unique bytes and a record list (u8 kind, u8 image, u32 index, u32 ref per changed chunk), each
 * compressed by `xz -9` on one thread, plus the device state by `xz -9`.
 */
import { createHash } from 'crypto';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ChunkEncoder } from '../../sandbox/overlay/chunkEncoder';
import { CHUNK_SIZE, Encoding, type Target } from '../../sandbox/overlay/format';
import { Qcow2Reader } from '../../sandbox/overlay/qcow2Reader';

export type DedupKind = 'zero' | 'baseRam' | 'baseDisk' | 'earlier' | 'unique';
const KIND: Record<number, DedupKind> = {
  [Encoding.Zero]: 'zero', [Encoding.BaseRam]: 'baseRam', [Encoding.BaseDisk]: 'baseDisk', [Encoding.Self]: 'earlier', [Encoding.Raw]: 'unique',
};
const KIND_CODE: Record<DedupKind, number> = { zero: 0, baseRam: 1, baseDisk: 2, earlier: 3, unique: 4 };

/**
 * Chunk classifier and stream builder (pure: no files). Reuses the overlay's digest index with the
 * base reader switched off, so no chunk is ever stored as a delta: raw bytes or a reference.
 */
export class DedupStreams {
  private readonly encoder: ChunkEncoder;
  private readonly unique: Buffer[] = [];
  private readonly records: Buffer[] = [];
  readonly counts: Record<DedupKind, number> = { zero: 0, baseRam: 0, baseDisk: 0, earlier: 0, unique: 0 };

  constructor(baseRamDigests: Buffer, baseDiskDigests: Buffer) {
    this.encoder = new ChunkEncoder(baseRamDigests, baseDiskDigests, () => undefined);
  }

  /** True when chunk `index` of `target` has the base's bytes at the same index (not part of the overlay). */
  unchanged(target: Target, index: number, digest: Buffer): boolean {
    const b = this.encoder.baseDigest(target, index);
    return !!b && b.equals(digest);
  }

  /** Adds a changed chunk (call in overlay order: disk ascending, then RAM ascending). */
  add(target: Target, index: number, data: Buffer, digest: Buffer = createHash('sha256').update(data).digest()): DedupKind {
    const e = this.encoder.encode(target, index, data, digest);
    const kind = KIND[e.encoding];
    if (!kind) throw new Error(`unexpected encoding ${e.encoding} with the base reader off`);
    this.counts[kind]++;
    const r = Buffer.alloc(10);
    r.writeUInt8(KIND_CODE[kind], 0); r.writeUInt8(target === 'disk' ? 1 : 0, 1);
    r.writeUInt32LE(index, 2); r.writeUInt32LE(e.ref, 6);
    this.records.push(r);
    if (kind === 'unique') this.unique.push(Buffer.from(data));
    return kind;
  }

  uniqueBytes(): Buffer { return Buffer.concat(this.unique); }
  recordBytes(): Buffer { return Buffer.concat(this.records); }
}

function xz9(input: string): { bytes: number; ms: number } {
  const t0 = Date.now();
  const r = spawnSync('xz', ['-9', '-k', '-f', '-T1', input], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`xz -9 ${input}: ${r.stderr.toString().slice(0, 300)}`);
  return { bytes: fs.statSync(`${input}.xz`).size, ms: Date.now() - t0 };
}

export interface DedupXzResult {
  bytes: number; ms: number; dedupMs: number; xzMs: number;
  uniqueBytes: number; uniqueXzBytes: number; recordsXzBytes: number; deviceStateXzBytes: number;
  counts: { ram: Record<DedupKind, number>; disk: Record<DedupKind, number> };
}

/** Runs the peer on files: base digests + base disk, launch RAM, launch qcow2 layer, device state. */
export function dedupXz(base: { ramDigests: string; diskDigests: string; disk: string }, launch: { ramFile: string; diskLayer: string; deviceState: string }, workDir: string): DedupXzResult {
  const t0 = Date.now();
  fs.mkdirSync(workDir, { recursive: true });
  const d = new DedupStreams(fs.readFileSync(base.ramDigests), fs.readFileSync(base.diskDigests));
  const counts = { ram: { zero: 0, baseRam: 0, baseDisk: 0, earlier: 0, unique: 0 }, disk: { zero: 0, baseRam: 0, baseDisk: 0, earlier: 0, unique: 0 } };
  const chunk = Buffer.alloc(CHUNK_SIZE);
  const baseDiskFd = fs.openSync(base.disk, 'r');
  const layer = Qcow2Reader.open(launch.diskLayer);
  try {
    for (const idx of layer.allocatedChunks()) {
      layer.readChunk(idx, chunk, baseDiskFd);
      const digest = createHash('sha256').update(chunk).digest();
      if (d.unchanged('disk', idx, digest)) continue;
      counts.disk[d.add('disk', idx, chunk, digest)]++;
    }
  } finally { layer.close(); fs.closeSync(baseDiskFd); }
  const ramFd = fs.openSync(launch.ramFile, 'r');
  try {
    const pages = fs.statSync(launch.ramFile).size / CHUNK_SIZE;
    const block = Buffer.alloc(CHUNK_SIZE * 256);
    for (let first = 0; first < pages; first += 256) {
      const n = Math.min(256, pages - first);
      fs.readSync(ramFd, block, 0, n * CHUNK_SIZE, first * CHUNK_SIZE);
      for (let i = 0; i < n; i++) {
        const page = block.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE);
        const digest = createHash('sha256').update(page).digest();
        if (d.unchanged('ram', first + i, digest)) continue;
        counts.ram[d.add('ram', first + i, page, digest)]++;
      }
    }
  } finally { fs.closeSync(ramFd); }
  const files = { unique: path.join(workDir, 'unique.bin'), records: path.join(workDir, 'records.bin'), state: path.join(workDir, 'state.bin') };
  const uniq = d.uniqueBytes();
  fs.writeFileSync(files.unique, uniq);
  fs.writeFileSync(files.records, d.recordBytes());
  fs.copyFileSync(launch.deviceState, files.state);
  const dedupMs = Date.now() - t0;
  const u = xz9(files.unique), r = xz9(files.records), s = xz9(files.state);
  for (const f of Object.values(files)) { fs.rmSync(f, { force: true }); fs.rmSync(`${f}.xz`, { force: true }); }
  return {
    bytes: u.bytes + r.bytes + s.bytes, ms: Date.now() - t0, dedupMs, xzMs: u.ms + r.ms + s.ms,
    uniqueBytes: uniq.length, uniqueXzBytes: u.bytes, recordsXzBytes: r.bytes, deviceStateXzBytes: s.bytes, counts,
  };
}
