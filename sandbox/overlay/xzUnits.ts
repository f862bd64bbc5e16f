/**
 * Compression units of the wire profile (container version 2): consecutive segments of one image,
 * their decompressed bytes back to back, compressed as one xz stream (LZMA2, preset 9: a 64 MiB
 * dictionary, single-threaded, so the same input gives the same bytes). One stream over an image
 * finds the repeats between segments that per-segment zstd cannot (bench/RESULTS.md, overlay).
 *
 * The decoder is bounded: liblzma refuses a stream whose dictionary needs more than
 * XZ_DECODER_MEMLIMIT, the output stops at the unit's declared size (at most LIMITS.unitRawBytes),
 * and the input is at most LIMITS.unitBytes, so a hostile unit costs bounded memory and time.
 * lzma-native runs liblzma on libuv's thread pool (the event loop stays free).
 */
import { createHash } from 'crypto';
import { CloudletError } from '../common/errors';
import { LIMITS, XZ_DECODER_MEMLIMIT, type CompressionUnit, type SegmentEntry } from './format';

/** Loaded on first use: only the wire profile needs liblzma (build overlays, handoff and the tests of both never load it). */
let loaded: LzmaNative | undefined;
function lzma(): LzmaNative {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('lzma-native') as LzmaNative);
}

interface LzmaStream extends NodeJS.ReadWriteStream { destroy(error?: Error): void }
interface LzmaNative {
  CHECK_NONE: number;
  PRESET_EXTREME: number;
  createStream(coder: 'easyEncoder' | 'streamDecoder', options: Record<string, unknown>): LzmaStream;
}

/** The wire profile's xz preset (the level recorded in the manifest). */
export const XZ_LEVEL = 9;

function run(stream: LzmaStream, input: Buffer, maxOut: number, what: string): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0;
    let done = false;
    const fail = (e: Error) => { if (!done) { done = true; stream.destroy(); reject(e); } };
    stream.on('data', (b: Buffer) => {
      total += b.length;
      if (total > maxOut) { fail(new CloudletError('Corrupt', `${what} decompresses to more than ${maxOut} bytes; refused`)); return; }
      parts.push(b);
    });
    stream.on('error', (e: Error & { name?: string }) => {
      const why = /MEMLIMIT/.test(`${e.name} ${e.message}`) ? `needs more than ${XZ_DECODER_MEMLIMIT} bytes of decoder memory (a dictionary larger than the format allows)` : e.message;
      fail(new CloudletError('Corrupt', `${what} does not decompress: ${why}`));
    });
    stream.on('end', () => { if (!done) { done = true; resolve(Buffer.concat(parts, total)); } });
    stream.end(input);
  });
}

/** Compresses one unit's raw bytes (deterministic for a given liblzma). */
export async function compressUnit(raw: Buffer): Promise<Buffer> {
  if (raw.length > LIMITS.unitRawBytes) throw new CloudletError('Internal', `compression unit of ${raw.length} bytes is past the limit of ${LIMITS.unitRawBytes}`);
  return run(lzma().createStream('easyEncoder', { preset: XZ_LEVEL, check: lzma().CHECK_NONE, threads: 1 }), raw, Number.MAX_SAFE_INTEGER, 'compression unit');
}

/**
 * Checks a stored unit (length, SHA-256 name) and decompresses it with the bounds above; the result
 * is exactly `unit.rawSize` bytes (one xz stream, nothing after it) or a Corrupt refusal.
 */
export async function decompressUnit(unit: CompressionUnit, stored: Buffer): Promise<Buffer> {
  const what = `compression unit ${unit.digest}`;
  if (stored.length !== unit.size) throw new CloudletError('Corrupt', `${what} is ${stored.length} bytes but the manifest says ${unit.size} (truncated overlay or transfer)`);
  const name = `sha256:${createHash('sha256').update(stored).digest('hex')}`;
  if (name !== unit.digest) throw new CloudletError('Corrupt', `${what} is corrupt: its bytes hash to ${name} (the overlay was damaged in storage or transit)`);
  if (unit.rawSize > LIMITS.unitRawBytes) throw new CloudletError('Corrupt', `${what} declares ${unit.rawSize} bytes, past the limit of ${LIMITS.unitRawBytes}; refused`);
  // No LZMA_CONCATENATED flag: the decoder ends at the first stream's end and refuses what follows.
  const raw = await run(lzma().createStream('streamDecoder', { memlimit: XZ_DECODER_MEMLIMIT }), stored, unit.rawSize, what);
  if (raw.length !== unit.rawSize) throw new CloudletError('Corrupt', `${what} decompressed to ${raw.length} bytes, the manifest says ${unit.rawSize}; refused`);
  return raw;
}

/**
 * Groups a manifest's segments into units: consecutive segments of the same image, up to
 * LIMITS.unitRawBytes of raw bytes each; the device state alone. Depends only on the segment list,
 * so the same overlay always gets the same units.
 */
export function planUnits(segments: SegmentEntry[]): Array<{ first: number; count: number; rawSize: number }> {
  const out: Array<{ first: number; count: number; rawSize: number }> = [];
  const key = (s: SegmentEntry) => (s.kind === 'device-state' ? 'device-state' : s.target);
  for (const [i, s] of segments.entries()) {
    const last = out[out.length - 1];
    if (last && key(segments[last.first]) === key(s) && key(s) !== 'device-state' && last.rawSize + s.rawSize <= LIMITS.unitRawBytes) {
      last.count++;
      last.rawSize += s.rawSize;
    } else {
      out.push({ first: i, count: 1, rawSize: s.rawSize });
    }
  }
  return out;
}
