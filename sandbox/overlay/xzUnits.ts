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

/** Whether liblzma loads here (a destination names the handoff feature xz-units only then). */
export function xzAvailable(): boolean {
  try { lzma(); return true; } catch { return false; }
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
        settle(decoderRefusal(err, what));
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

/** liblzma's error for a unit, as the refusal both decoders give (a dictionary past the memory limit named as such). */
function decoderRefusal(err: Error, what: string): CloudletError {
  const why = /MEMLIMIT/.test(`${err.name} ${err.message}`) ? `needs more than ${XZ_DECODER_MEMLIMIT} bytes of decoder memory (a dictionary larger than the format allows)` : err.message;
  return new CloudletError('Corrupt', `${what} does not decompress: ${why}`);
}

/**
 * At most two units decode at once in this process, whatever the number of overlays being read.
 * A place is held only while a unit's bytes, all in memory, decode (CPU-bound, bounded by the unit
 * limits): never while bytes are awaited from a peer, so a quiet handoff source cannot hold one.
 * A finished decode hands its place straight to the first waiter; a waiter whose signal aborts leaves.
 */
const DECODERS = 2;
let decoding = 0;
const waiting: Array<() => void> = [];
async function withDecoder<T>(work: () => Promise<T>, signal?: AbortSignal, what = 'xz decode'): Promise<T> {
  await takePlace(signal, what);
  try { return await work(); } finally { givePlace(); }
}

/** Takes a decoder place, in order behind the callers already waiting (leaves the queue if `signal` aborts). */
async function takePlace(signal: AbortSignal | undefined, what: string): Promise<void> {
  if (decoding < DECODERS) decoding++;
  else {
    await new Promise<void>((resolve, reject) => {
      const grant = () => { signal?.removeEventListener('abort', onAbort); resolve(); };
      const onAbort = () => {
        const i = waiting.indexOf(grant);
        if (i >= 0) waiting.splice(i, 1);
        reject(new CloudletError('Cancelled', `${what}: cancelled while waiting for a decoder`));
      };
      if (signal?.aborted) { onAbort(); return; }
      waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Gives a decoder place back: straight to the first waiter, if any. */
function givePlace(): void {
  const next = waiting.shift();
  if (next) next(); else decoding--;
}

/** Decoders in use and callers waiting for one (tests). */
export function decoderPlaces(): { decoding: number; waiting: number } {
  return { decoding, waiting: waiting.length };
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
  }, signal, what);
  if (raw.length !== unit.rawSize) throw new CloudletError('Corrupt', `${what} decompressed to ${raw.length} bytes, the manifest says ${unit.rawSize}; refused`);
  return raw;
}

/**
 * One unit decoded as `input` gives its compressed bytes, with decompressUnit's bounds: the decoder's memory limit, the output never past the
 * declared `unit.rawSize` (refused as soon as it would be) and exactly that size at the end, one xz
 * stream with nothing after it, the input exactly `unit.size` bytes, and its SHA-256 equal to the
 * unit's name once every byte passed (before the stream's end is accepted). `input(max)` gives the
 * unit's next bytes (1..max of them; it throws if there are none). `out` gets the output as liblzma
 * makes it, in order; the next input slice goes in only once the promise `out` returned settled
 * (backpressure). Counts against the process's decoders (at most two units decode at once) while
 * it decodes; with `fromPeer` (`input` waits on the network: a handoff round as it arrives) the
 * place is given back whenever `input` has no bytes at hand and taken again when they come, so a
 * quiet peer never holds a place every synthesis needs.
 */
export async function decodeUnitStream(unit: CompressionUnit, input: (max: number) => Promise<Buffer>, out: (b: Buffer) => void | Promise<void>, signal?: AbortSignal,
  o: { fromPeer?: boolean } = {}): Promise<void> {
  const what = `compression unit ${unit.digest}`;
  if (unit.rawSize > LIMITS.unitRawBytes) throw new CloudletError('Corrupt', `${what} declares ${unit.rawSize} bytes, past the limit of ${LIMITS.unitRawBytes}; refused`);
  if (unit.size > LIMITS.unitBytes) throw new CloudletError('Corrupt', `${what} is ${unit.size} bytes, past the limit of ${LIMITS.unitBytes}; refused`);
  const codec = lzma();
  let held = false;
  const give = () => { if (held) { held = false; givePlace(); } };
  await takePlace(signal, what);
  held = true;
  try { await new Promise<void>((resolve, reject) => {
    const stream = new codec.Stream();
    stream.streamDecoder_(XZ_DECODER_MEMLIMIT, 0);
    stream.memlimitSet(XZ_DECODER_MEMLIMIT);
    const hash = createHash('sha256');
    let fed = 0, total = 0, done = false, named: string | undefined;
    let handed: Promise<void> = Promise.resolve();
    const settle = (e?: Error) => {
      if (done) return;
      done = true;
      stream.resetUnderlying();
      if (e) reject(e); else resolve();
    };
    /** Once every input byte passed: the unit's name checked (undefined: fine). */
    const nameError = () => {
      named ??= `sha256:${hash.digest('hex')}`;
      return named === unit.digest ? undefined : new CloudletError('Corrupt', `${what} is corrupt: its bytes hash to ${named} (damaged in transit)`);
    };
    const feed = async () => {
      try {
        await handed;
        if (done) return;
        if (signal?.aborted) throw new CloudletError('Cancelled', `${what}: cancelled`);
        let next: Buffer | null = null;
        if (fed < unit.size) {
          // A cancel does not wait for input that may never come (a source gone quiet): the decoder's place is given back.
          const asked = input(Math.min(DECODE_SLICE, unit.size - fed));
          const now = o.fromPeer ? await Promise.race([asked, NOT_AT_HAND]) : NOTHING_YET;
          if (now !== NOTHING_YET) next = now as Buffer;
          else if (!o.fromPeer) next = await untilAborted(asked, signal, what);
          else {
            // Nothing received yet: no place held while the peer sends (or goes quiet).
            give();
            next = await untilAborted(asked, signal, what);
            await takePlace(signal, what);
            held = true;
            if (done) { give(); return; }
          }
          if (!next.length || next.length > unit.size - fed) throw new CloudletError('Internal', `${what}: the reader gave ${next.length} bytes`);
          hash.update(next);
          fed += next.length;
        } else {
          const bad = nameError();
          if (bad) throw bad;
        }
        if (done) return;
        stream.code(next, true);
      } catch (e) {
        settle(e instanceof CloudletError ? e : new CloudletError('Corrupt', `${what} does not decompress: ${(e as Error).message}`));
      }
    };
    stream.bufferHandler = (buf, processedChunks, err, totalIn) => {
      if (done) return;
      if (err) {
        settle(decoderRefusal(err, what));
      } else if (buf) {
        total += buf.length;
        if (total > unit.rawSize) { settle(new CloudletError('Corrupt', `${what} decompresses to more than ${unit.rawSize} bytes (its declared size); refused`)); return; }
        handed = handed.then(() => (done ? undefined : out(buf)));
        handed.catch((e: Error) => settle(e));
      } else if (buf === null) {
        // The stream's end: every byte of the unit fed and used, its name right, the declared size made.
        if (fed < unit.size || (totalIn !== null && totalIn !== fed)) { settle(new CloudletError('Corrupt', `${what} has bytes after its xz stream's end; refused`)); return; }
        const bad = nameError();
        if (bad) { settle(bad); return; }
        if (total !== unit.rawSize) { settle(new CloudletError('Corrupt', `${what} decompressed to ${total} bytes, its declared size is ${unit.rawSize}; refused`)); return; }
        handed.then(() => settle(), (e: Error) => settle(e));
      } else if (typeof processedChunks === 'number' && processedChunks > 0) {
        void feed();
      }
    };
    void feed();
  }); } finally { give(); }
}

/** What Promise.race with NOT_AT_HAND gives when the input's promise has not settled yet (a settled one comes first). */
const NOTHING_YET = Symbol('nothing yet');
const NOT_AT_HAND = Promise.resolve(NOTHING_YET);

/** `p`, or a Cancelled refusal as soon as `signal` aborts (p is then left to settle unobserved). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  p.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new CloudletError('Cancelled', `${what}: cancelled`));
    if (signal.aborted) { onAbort(); return; }
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
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
