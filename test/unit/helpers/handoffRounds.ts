/** Handoff rounds for tests: the ones a source makes for a generated image pair, and bodies built by hand. */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import { Readable } from 'stream';
import type { SegmentCompressor } from '../../../sandbox/overlay/segmentCompressor';
import { encodeRoundBody } from '../../../sandbox/handoff/protocol';
import { RoundEncoder } from '../../../sandbox/handoff/roundEncoder';
import { CHUNK_SIZE } from '../../../sandbox/overlay/format';
import { Qcow2Reader } from '../../../sandbox/overlay/qcow2Reader';
import { PAGE, type GeneratedPair } from './generatedImages';

/** The rounds a source would send for the pair: round 0 all of RAM and disk, round 1 (final) the device state. */
export async function encodeRounds(pair: GeneratedPair, compressor: Pick<SegmentCompressor, 'compress' | 'threads'>): Promise<Buffer[]> {
  const enc = new RoundEncoder({ ramFile: pair.base.ramFile, diskFile: pair.base.diskFile,
    ramDigests: fs.readFileSync(pair.base.ramDigests), diskDigests: fs.readFileSync(pair.base.diskDigests) }, compressor, 3);
  const dg = (b: Buffer) => createHash('sha256').update(b).digest();
  try {
    enc.begin();
    const baseDisk = fs.readFileSync(pair.base.diskFile);
    for (let i = 0; i < pair.disk.length / PAGE; i++) {
      const c = pair.disk.subarray(i * PAGE, (i + 1) * PAGE);
      if (!c.equals(baseDisk.subarray(i * PAGE, (i + 1) * PAGE))) await enc.add('disk', i, Buffer.from(c), dg(c));
    }
    const baseRam = fs.readFileSync(pair.base.ramFile);
    for (let i = 0; i < pair.ram.length / PAGE; i++) {
      const c = pair.ram.subarray(i * PAGE, (i + 1) * PAGE);
      if (!c.equals(baseRam.subarray(i * PAGE, (i + 1) * PAGE))) await enc.add('ram', i, Buffer.from(c), dg(c));
    }
    const r0 = await enc.finish();
    enc.begin();
    const r1 = await enc.finish(fs.readFileSync(pair.launch.deviceState));
    return [encodeRoundBody({ round: 0, final: false, segments: r0.segments }, r0.data), encodeRoundBody({ round: 1, final: true, segments: r1.segments }, r1.data)];
  } finally { enc.close(); }
}

/** A body of a header and segment bytes, split in small pieces as a network would deliver it. */
export function bodyOf(header: unknown, segments: Buffer = Buffer.alloc(0)): Readable {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return pieces(Buffer.concat([len, h, segments]));
}

export function pieces(b: Buffer, size = 65536): Readable {
  const parts: Buffer[] = [];
  for (let o = 0; o < b.length; o += size) parts.push(b.subarray(o, o + size));
  return Readable.from(parts);
}


/** Asserts that the qcow2 layer `layerFile` over the pair's base disk reads back as the pair's launch disk, chunk by chunk. */
export function assertLayerIsLaunchDisk(layerFile: string, pair: GeneratedPair): void {
  const layer = Qcow2Reader.open(layerFile);
  const fd = fs.openSync(pair.base.diskFile, 'r');
  try {
    const buf = Buffer.alloc(CHUNK_SIZE);
    for (let i = 0; i < pair.disk.length / PAGE; i++) assert.ok(layer.readChunk(i, buf, fd).equals(pair.disk.subarray(i * PAGE, (i + 1) * PAGE)), `destination disk chunk ${i}`);
  } finally { layer.close(); fs.closeSync(fd); }
}
