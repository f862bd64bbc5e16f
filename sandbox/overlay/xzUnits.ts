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
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (loaded ??= require('lzma-native') as LzmaNative);
  } catch (e) {
    throw new CloudletError('MissingTool', `wire-profile overlays need the lzma-native package, which does not load here: ${(e as Error).message.split('\n')[0]}`, {
      hint: 'run npm ci in the Cloudlet Toolkit folder',
    });
  }
}

/**
 * lzma-native's native coder, driven directly: its stream wrapper hands a whole buffer to liblzma
 * and queues every byte of output before the first 'data' event (a small unit that decodes to
 * gigabytes would be held whole), and splits its input at every "YZ" pair (one thread-pool trip each).
 */
interface NativeStream {
  bufferHandler: (buf: Buffer | null | undefined, processedChunks: number | undefined, err: Error | null | undefined, totalIn: number | null) => void;
  code(input: Buffer | null, async: boolean): void;
  streamDecoder_(memlimit: number, flags: number): void;
  mtEncoder_(options: { preset: number; filters: null; check: number; threads: number }): void;
  memlimitSet(n: number): void;
  resetUnderlying(): void;
}
interface LzmaNative {
  CHECK_NONE: number;
  Stream: new () => NativeStream;
}

/** The wire profile's xz preset (the level recorded in the manifest). */
export const XZ_LEVEL = 9;

/**
 * Input goes to liblzma in slices, the next only once the last is consumed, and the output is
 * checked after each: LZMA expands at most ~7,000:1, so a decoder slice of 4 KiB yields at most
 * ~28 MiB past the cap before the refusal. No slice is sent after a refusal or a cancel.
 */
const DECODE_SLICE = 4096;
const ENCODE_SLICE = 1 << 20;

function codeAll(stream: NativeStream, input: Buffer, slice: number, maxOut: number, what: string, signal?: AbortSignal): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0, offset = 0, done = false;
    const settle = (e?: Error) => {
      if (done) return;
      done = true;
      stream.resetUnderlying();
      if (e) reject(e); else resolve(Buffer.concat(parts, total));
    };
    const feed = () => {
      if (done) return;
      if (signal?.aborted) { settle(new CloudletError('Cancelled', `${what}: cancelled`)); return; }
      const next = offset < input.length ? input.subarray(offset, offset + slice) : null;
      offset += next?.length ?? 0;
      try { stream.code(next, true); } catch (e) { settle(new CloudletError('Corrupt', `${what} does not decompress: ${(e as Error).message}`)); }
    };
    stream.bufferHandler = (buf, processedChunks, err, totalIn) => {
      if (done) return;
      if (err) {
        const why = /MEMLIMIT/.test(`${err.name} ${err.message}`) ? `needs more than ${XZ_DECODER_MEMLIMIT} bytes of decoder memory (a dictionary larger than the format allows)` : err.message;
        settle(new CloudletError('Corrupt', `${what} does not decompress: ${why}`));
      } else if (buf) {
        total += buf.length;
        if (total > maxOut) settle(new CloudletError('Corrupt', `${what} decompresses to more than ${maxOut} bytes; refused`));
        else parts.push(buf);
      } else if (buf === null) {
        // The end of the (first) stream: anything after it is refused (one stream per unit, no padding).
        if (totalIn !== null && totalIn !== input.length) settle(new CloudletError('Corrupt', `${what} has ${input.length - totalIn} bytes after its xz stream's end; refused`));
        else settle();
      } else if (typeof processedChunks === 'number' && processedChunks > 0) {
        setImmediate(feed);
      }
    };
    feed();
  });
}

/** At most two units decode at once in this process, whatever the number of overlays being read. */
const DECODERS = 2;
let decoding = 0;
const waiting: Array<() => void> = [];
async function withDecoder<T>(work: () => Promise<T>): Promise<T> {
  if (decoding >= DECODERS) await new Promise<void>((r) => waiting.push(r));
  decoding++;
  try { return await work(); } finally { decoding--; waiting.shift()?.(); }
}

/** Compresses one unit's raw bytes (deterministic for a given liblzma). */
export async function compressUnit(raw: Buffer): Promise<Buffer> {
  if (raw.length > LIMITS.unitRawBytes) throw new CloudletError('Internal', `compression unit of ${raw.length} bytes is past the limit of ${LIMITS.unitRawBytes}`);
  const stream = new (lzma().Stream)();
  // The block encoder with one thread: what the units were first measured and published with.
  stream.mtEncoder_({ preset: XZ_LEVEL, filters: null, check: lzma().CHECK_NONE, threads: 1 });
  return codeAll(stream, raw, ENCODE_SLICE, Number.MAX_SAFE_INTEGER, 'compression unit');
}

/**
 * Checks a stored unit (length, SHA-256 name) and decompresses it with the bounds above; the result
 * is exactly `unit.rawSize` bytes (one xz stream, nothing after it) or a Corrupt refusal.
 */
export async function decompressUnit(unit: CompressionUnit, stored: Buffer, signal?: AbortSignal): Promise<Buffer> {
  const what = `compression unit ${unit.digest}`;
  if (stored.length !== unit.size) throw new CloudletError('Corrupt', `${what} is ${stored.length} bytes but the manifest says ${unit.size} (truncated overlay or transfer)`);
  const name = `sha256:${createHash('sha256').update(stored).digest('hex')}`;
  if (name !== unit.digest) throw new CloudletError('Corrupt', `${what} is corrupt: its bytes hash to ${name} (the overlay was damaged in storage or transit)`);
  if (unit.rawSize > LIMITS.unitRawBytes) throw new CloudletError('Corrupt', `${what} declares ${unit.rawSize} bytes, past the limit of ${LIMITS.unitRawBytes}; refused`);
  // No LZMA_CONCATENATED flag: the decoder ends at the first stream's end; codeAll refuses what follows.
  const raw = await withDecoder(() => {
    const stream = new (lzma().Stream)();
    stream.streamDecoder_(XZ_DECODER_MEMLIMIT, 0);
    stream.memlimitSet(XZ_DECODER_MEMLIMIT);
    return codeAll(stream, stored, DECODE_SLICE, unit.rawSize, what, signal);
  });
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
