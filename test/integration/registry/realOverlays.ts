/**
 * Real overlays (made by sandbox/overlay's createOverlay) from generated images, no VM needed:
 * a base (RAM with zero and random pages, random disk) and two launch states that differ by one
 * "file" on the disk, so version 2 shares every segment with version 1 except the ones holding it.
 */
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CHUNK_SIZE } from '../../../sandbox/overlay/format';
import { createOverlay, CreateOverlayResult } from '../../../sandbox/overlay/overlayWriter';
import { SegmentCompressor } from '../../../sandbox/overlay/segmentCompressor';
import { testVmConfig } from '../../unit/helpers/generatedImages';

const MiB = 1 << 20;

export interface GeneratedBase {
  baseId: string;
  ramFile: string;
  diskFile: string;
  ramDigests: Buffer;
  diskDigests: Buffer;
}

export interface OverlayPair {
  base: GeneratedBase;
  v1: CreateOverlayResult;
  v2: CreateOverlayResult;
  launchRam: string;          // the launch RAM both versions restore
  launchDisk: { v1: string; v2: string };
}

function digestList(file: string): Buffer {
  const data = fs.readFileSync(file);
  const out = Buffer.alloc((data.length / CHUNK_SIZE) * 32);
  for (let i = 0; i * CHUNK_SIZE < data.length; i++) {
    crypto.createHash('sha256').update(data.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)).digest().copy(out, i * 32);
  }
  return out;
}

/** Deterministic pseudo-random bytes (so reruns give the same overlays). */
function prng(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++) {
    const block = crypto.createHash('sha512').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

function writeAt(qcow2: string, file: string, offset: number, length: number): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -s ${file} ${offset} ${length}`, qcow2], { stdio: 'pipe' });
}

export interface PairOptions {
  ramMiB?: number;    // base/launch RAM (default 8)
  diskMiB?: number;   // base disk (default 16)
  heapMiB?: number;   // new RAM pages in the launch state (default 2)
  appMiB?: number;    // new disk data shared by both versions (default 2)
  confKiB?: number;   // the file that differs between v1 and v2 (default 256)
}

export async function makeOverlayPair(dir: string, opts: PairOptions = {}): Promise<OverlayPair> {
  const ramSize = (opts.ramMiB ?? 8) * MiB;
  const diskSize = (opts.diskMiB ?? 16) * MiB;
  const heap = (opts.heapMiB ?? 2) * MiB;
  const appSize = (opts.appMiB ?? 2) * MiB;
  const confSize = (opts.confKiB ?? 256) * 1024;
  if (ramSize / 2 + heap + 256 * 1024 > ramSize || 2 * MiB + appSize > diskSize - confSize - MiB) throw new Error('makeOverlayPair: sizes do not fit');
  fs.mkdirSync(dir, { recursive: true });
  const ramFile = path.join(dir, 'base-ram.raw');
  const diskFile = path.join(dir, 'base-disk.raw');
  const baseRam = Buffer.alloc(ramSize);
  prng('base-ram', ramSize / 2).copy(baseRam, 0);           // upper half stays zero
  fs.writeFileSync(ramFile, baseRam);
  fs.writeFileSync(diskFile, prng('base-disk', diskSize));
  const ramDigests = digestList(ramFile);
  const diskDigests = digestList(diskFile);
  const baseId = crypto.createHash('sha256').update(ramDigests).update(diskDigests).digest('hex');
  const base = { baseId, ramFile, diskFile, ramDigests, diskDigests };

  // Launch RAM: 2 MiB of new pages (the back-end's heap) and a copy of a base-disk block (page cache).
  const launchRam = path.join(dir, 'launch-ram.raw');
  const ram = Buffer.from(baseRam);
  prng('heap', heap).copy(ram, ramSize / 2);
  fs.readFileSync(diskFile).subarray(0, 256 * 1024).copy(ram, ramSize / 2 + heap);
  fs.writeFileSync(launchRam, ram);
  const deviceState = path.join(dir, 'state.bin');
  fs.writeFileSync(deviceState, prng('device-state', 200 * 1024));

  // Launch disks: an installed "app" and a "config file" near the end of the disk that v2 changes.
  const app = path.join(dir, 'app.bin');
  fs.writeFileSync(app, prng('app', appSize));
  const launchDisk = { v1: path.join(dir, 'launch-v1.qcow2'), v2: path.join(dir, 'launch-v2.qcow2') };
  for (const [version, layer] of Object.entries(launchDisk)) {
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', diskFile, '-F', 'raw', layer], { stdio: 'pipe' });
    writeAt(layer, app, 2 * MiB, appSize);
    const conf = path.join(dir, `conf-${version}.bin`);
    fs.writeFileSync(conf, prng(`config-${version}`, confSize));
    writeAt(layer, conf, diskSize - confSize - MiB, confSize);
  }

  const compressor = new SegmentCompressor(1);
  try {
    const make = (version: 'v1' | 'v2') => createOverlay(base, {
      ramFile: launchRam, diskLayer: launchDisk[version], deviceState, vmConfig: testVmConfig(ramSize),
    }, { outFile: path.join(dir, `${version}.overlay`), compressor });
    const v1 = await make('v1');
    const v2 = await make('v2');
    return { base, v1, v2, launchRam, launchDisk };
  } finally {
    await compressor.close();
  }
}

/** Segments of `next` that `prev` does not have (what an incremental publish must upload). */
export function changedSegments(prev: CreateOverlayResult, next: CreateOverlayResult): { digest: string; size: number }[] {
  const had = new Set(prev.manifest.segments.map((s) => s.digest));
  return next.manifest.segments.filter((s) => !had.has(s.digest)).map((s) => ({ digest: s.digest, size: s.size }));
}
