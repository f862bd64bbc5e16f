/**
 * What a v2 overlay would weigh if it were stored against its parent v1 (issue 13.3: "an overlay
 * naming a parent overlay by digest"), measured with the real writer and no format change:
 * v1 and v2 are applied to the base (launch files only, no VM); v1's launch RAM and flattened
 * disk then play the base for createOverlay(v2). So every v2 chunk equal to v1's at the same
 * index is left out, a chunk equal to any v1 chunk is a 12-byte reference, and a page with a few
 * words changed since v1 is an xor against v1's page: exactly what a parent-chain encoding would
 * store. Chunks v1 changed and v2 put back to the base's bytes are not seen by this measurement
 * (the v2 disk layer does not map them): they are counted and priced at 12 bytes each (one record).
 * Analysis only. Run alone: node --import tsx bench/lib/parentDelta.ts V1 V2 (realistic home's base).
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createOverlay } from '../../sandbox/overlay';
import { applyOverlay } from '../../sandbox/overlay/apply';
import { CHUNK_SIZE, type OverlayManifest } from '../../sandbox/overlay/format';
import { OverlayReader } from '../../sandbox/overlay/overlayReader';

export interface ParentDelta {
  /** The v2-against-v1 overlay file, bytes (same level as v2). */
  bytes: number;
  /** Per image: chunks stored, compressed segment bytes. */
  ram: { chunks: number; bytes: number; encodings: Record<string, number> };
  disk: { chunks: number; bytes: number; encodings: Record<string, number> };
  deviceStateBytes: number;
  /** v1 disk chunks v2 no longer maps (priced at one 12-byte record each, not in `bytes`). */
  revertedDiskChunks: number;
  ms: number;
}

interface BaseFiles { baseId: string; ramFile: string; diskFile: string; diskDigests: string }

function runsToSet(m: OverlayManifest, target: 'ram' | 'disk'): Set<number> {
  const s = new Set<number>();
  for (const seg of m.segments) if (seg.kind === 'chunks' && seg.target === target) for (const [first, n] of seg.chunks!) for (let i = 0; i < n; i++) s.add(first + i);
  return s;
}

function hashChunks(file: string): Buffer {
  const size = fs.statSync(file).size;
  const out = Buffer.alloc((size / CHUNK_SIZE) * 32);
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(8 << 20);
  try {
    for (let off = 0; off < size; off += buf.length) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
      for (let c = 0; c < n; c += CHUNK_SIZE) createHash('sha256').update(buf.subarray(c, c + CHUNK_SIZE)).digest().copy(out, ((off + c) / CHUNK_SIZE) * 32);
    }
  } finally { fs.closeSync(fd); }
  return out;
}

/** v1's disk digests: the base's, with the chunks v1 maps re-hashed from v1's flattened disk. */
function patchDigests(baseDigests: Buffer, flat: string, chunks: Set<number>): Buffer {
  const out = Buffer.from(baseDigests);
  const fd = fs.openSync(flat, 'r');
  const b = Buffer.alloc(CHUNK_SIZE);
  try {
    for (const i of chunks) {
      fs.readSync(fd, b, 0, CHUNK_SIZE, i * CHUNK_SIZE);
      createHash('sha256').update(b).digest().copy(out, i * 32);
    }
  } finally { fs.closeSync(fd); }
  return out;
}

export async function parentDelta(v1File: string, v2File: string, base: BaseFiles, say: (s: string) => void = () => undefined): Promise<ParentDelta> {
  const t0 = Date.now();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-parent-delta-'));
  const v1 = OverlayReader.open(v1File), v2 = OverlayReader.open(v2File);
  try {
    say('parent delta: applying v1 and v2 to the base (launch files)');
    const a1 = await applyOverlay(v1, v1, base, { outDir: path.join(work, 'v1') });
    const a2 = await applyOverlay(v2, v2, base, { outDir: path.join(work, 'v2') });
    const flat = path.join(work, 'v1-disk.raw');
    execFileSync('qemu-img', ['convert', '-O', 'raw', a1.diskLayer, flat]);
    const v1Disk = runsToSet(v1.manifest, 'disk'), v2Disk = runsToSet(v2.manifest, 'disk');
    let reverted = 0;
    for (const i of v1Disk) if (!v2Disk.has(i)) reverted++;
    say('parent delta: hashing v1\'s launch RAM and disk');
    const ramDigests = hashChunks(a1.ramFile);
    const diskDigests = patchDigests(fs.readFileSync(base.diskDigests), flat, v1Disk);
    say('parent delta: v2 encoded against v1\'s launch');
    const r = await createOverlay(
      { baseId: v2.manifest.baseId, ramFile: a1.ramFile, diskFile: flat, ramDigests, diskDigests },
      { ramFile: a2.ramFile, diskLayer: a2.diskLayer, deviceState: a2.deviceState, vmConfig: v2.manifest.vmConfig },
      { outFile: path.join(work, 'delta.overlay'), level: v2.manifest.compression.level },
    );
    const bd = r.manifest.breakdown;
    return {
      bytes: r.bytes,
      ram: { chunks: bd.ram.chunks, bytes: bd.ram.compressedBytes, encodings: bd.ram.encodings },
      disk: { chunks: bd.disk.chunks, bytes: bd.disk.compressedBytes, encodings: bd.disk.encodings },
      deviceStateBytes: r.manifest.segments.filter((s) => s.kind === 'device-state').reduce((n, s) => n + s.size, 0),
      revertedDiskChunks: reverted,
      ms: Date.now() - t0,
    };
  } finally {
    v1.close(); v2.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  (async () => {
    const [v1, v2] = process.argv.slice(2);
    const { BaseStore } = await import('../../sandbox/base/store');
    const { projectCache } = await import('../../sandbox/common/paths');
    const id = OverlayReader.open(v1).manifest.baseId;
    const b = new BaseStore(projectCache('bench-overlay', 'realistic', 'home')).get(id);
    const r = await parentDelta(v1, v2, { baseId: b.id, ramFile: b.ram, diskFile: b.disk, diskDigests: b.diskDigests }, (s) => process.stderr.write(`${s}\n`));
    process.stdout.write(JSON.stringify(r) + '\n');
  })().then(() => process.exit(0), (e) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exit(1); });
}
