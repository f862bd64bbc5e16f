/**
 * Small generated base/launch image pairs for overlay unit tests: every kind of change the encoder
 * distinguishes, and a qcow2 layer made by the real qemu-img/qemu-io over the base disk.
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { OverlayVmConfig } from '../../../sandbox/overlay/format';

export const PAGE = 4096;

/** The VM config a test overlay carries (a manifest must hold a complete one). */
export function testVmConfig(ramBytes: number): OverlayVmConfig {
  return { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56' }, ports: [80] };
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function prng(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

function textPage(tag: string): Buffer {
  const s = `${tag} the quick brown fox jumps over the lazy dog; `.repeat(200);
  return Buffer.from(s.slice(0, PAGE));
}

export function digests(buf: Buffer): Buffer {
  const out = Buffer.alloc((buf.length / PAGE) * 32);
  for (let i = 0; i < buf.length / PAGE; i++) createHash('sha256').update(buf.subarray(i * PAGE, (i + 1) * PAGE)).digest().copy(out, i * 32);
  return out;
}

export interface GeneratedPair {
  dir: string;
  baseId: string;
  base: { ramFile: string; diskFile: string; ramDigests: string; diskDigests: string };
  launch: { ramFile: string; diskRaw: string; diskLayer: string; deviceState: string; vmConfig: OverlayVmConfig };
  ram: Buffer;   // expected launch RAM
  disk: Buffer;  // expected launch disk
}

const page = (b: Buffer, i: number) => b.subarray(i * PAGE, (i + 1) * PAGE);

export function makePair(dir: string, opts: { clusterSize?: number; ramPages?: number; diskChunks?: number } = {}): GeneratedPair {
  fs.mkdirSync(dir, { recursive: true });
  const ramPages = opts.ramPages ?? 1024, diskChunks = opts.diskChunks ?? 2048;
  const baseRam = Buffer.alloc(ramPages * PAGE);
  prng(1, 500 * PAGE).copy(baseRam, 100 * PAGE);
  for (let i = 600; i < ramPages; i++) textPage(`ram${i}`).copy(baseRam, i * PAGE);
  const baseDisk = Buffer.alloc(diskChunks * PAGE);
  prng(2, 1000 * PAGE).copy(baseDisk, 0);
  for (let i = 1500; i < diskChunks; i++) textPage(`disk${i}`).copy(baseDisk, i * PAGE);
  baseDisk.fill(0x5a, 1900 * PAGE, 1910 * PAGE);

  const disk = Buffer.from(baseDisk);
  prng(3, 100 * PAGE).copy(disk, 1000 * PAGE);                            // new files in free space
  disk.fill(0, 10 * PAGE, 20 * PAGE);                                    // zeroed
  for (let i = 0; i < 10; i++) page(baseRam, 400 + i).copy(disk, (20 + i) * PAGE);    // copies of base RAM
  for (let i = 0; i < 10; i++) page(baseDisk, 1600 + i).copy(disk, (30 + i) * PAGE);  // copies of other base disk chunks
  const r2 = prng(4, PAGE);
  for (let i = 1100; i < 1110; i++) r2.copy(disk, i * PAGE);             // one new chunk, ten times
  for (let i = 1500; i < 1510; i++) disk.writeUInt32LE(0xdeadbeef + i, i * PAGE + 64); // small edits (xor)
  prng(5, PAGE).copy(disk, (diskChunks - 1) * PAGE);                     // last chunk

  const ram = Buffer.from(baseRam);
  ram.fill(0, 100 * PAGE, 110 * PAGE);                                   // zero pages
  for (let i = 0; i < 10; i++) page(baseRam, 300 + i).copy(ram, (110 + i) * PAGE);     // other base RAM offsets
  for (let i = 0; i < 10; i++) page(baseDisk, 50 + i).copy(ram, (120 + i) * PAGE);     // base disk chunks
  const r1 = prng(6, PAGE);
  for (let i = 130; i < 140; i++) r1.copy(ram, i * PAGE);                // repeated chunk
  prng(7, 60 * PAGE).copy(ram, 140 * PAGE);                              // random pages
  for (let i = 200; i < 210; i++) ram.writeUInt32LE(0x12345678 + i, i * PAGE + 8);     // small edits (xor)
  prng(8, 10 * PAGE).copy(ram, 0);                                       // was zero, now random
  for (let i = 0; i < 10; i++) page(disk, 1000 + i).copy(ram, (210 + i) * PAGE);       // page cache of new files
  for (let i = 0; i < 5; i++) r2.copy(ram, (220 + i) * PAGE);            // page cache of the repeated chunk

  const f = (n: string) => path.join(dir, n);
  fs.writeFileSync(f('base-ram.raw'), baseRam);
  fs.writeFileSync(f('base-disk.raw'), baseDisk);
  fs.writeFileSync(f('base-ram.digests'), digests(baseRam));
  fs.writeFileSync(f('base-disk.digests'), digests(baseDisk));
  fs.writeFileSync(f('launch-ram.raw'), ram);
  fs.writeFileSync(f('launch-disk.raw'), disk);
  fs.writeFileSync(f('state.bin'), Buffer.concat([Buffer.from('QEVM device state '), prng(9, 50000)]));
  // A real qemu-made layer: only clusters differing from the base, then a rewrite with identical bytes.
  const cs = opts.clusterSize ?? 4096;
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-B', f('base-disk.raw'), '-F', 'raw', '-o', `cluster_size=${cs}`, f('launch-disk.raw'), f('layer.qcow2')]);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 0x5a ${1900 * PAGE} ${10 * PAGE}`, f('layer.qcow2')]);
  const baseId = createHash('sha256').update(digests(baseRam)).update(digests(baseDisk)).digest('hex');
  return {
    dir, baseId,
    base: { ramFile: f('base-ram.raw'), diskFile: f('base-disk.raw'), ramDigests: f('base-ram.digests'), diskDigests: f('base-disk.digests') },
    launch: { ramFile: f('launch-ram.raw'), diskRaw: f('launch-disk.raw'), diskLayer: f('layer.qcow2'), deviceState: f('state.bin'), vmConfig: testVmConfig(ramPages * PAGE) },
    ram, disk,
  };
}
