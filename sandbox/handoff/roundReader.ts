/**
 * The destination's parser of a handoff round (protocol.ts): a round comes from another daemon and
 * is hostile input. Its header is checked exactly as strictly as an overlay manifest's segment list
 * (the same segment-entry schema, then checkSegmentEntries: runs inside the VM's RAM and disk,
 * ascending, counts bounded), and the segments' total against the body limit, before a segment
 * byte is read or anything is expanded. The body is read as a stream: one segment at a time is in
 * memory (each at most LIMITS.segmentBytes), never the whole round.
 */
import { createHash } from 'crypto';
import type { ValidateFunction } from 'ajv';
import { CloudletError } from '../common/errors';
import { describeSchemaError } from '../common/schemaError';
import { checkCompressionUnits, checkSegmentEntries, LIMITS, type CompressionUnit, type SegmentEntry, type Target } from '../overlay/format';
import { compileFormatSchema, compressionUnitSchema, segmentEntrySchema } from '../overlay/manifestSchema';
import { decodeUnitStream } from '../overlay/xzUnits';
import type { RoundHeader } from './protocol';

/** A round header's JSON is at most this long (a round of 1 TiB of RAM in ~1 MiB segments needs ~250 MiB: refused). */
export const ROUND_HEADER_MAX_BYTES = 16 << 20;

export interface RoundLimits {
  /** Chunks of the VM's RAM and disk (the destination's base): every run must lie inside. */
  chunks: Record<Target, number>;
  /** Bytes a whole round body may have (header and segments). */
  maxBytes: number;
  /** Rounds may carry xz compression units (this destination named the feature xz-units). */
  units?: boolean;
}

/** Decoded segments of a round's units waiting for the applier, at most (one is always let through). */
export const UNIT_QUEUE_BYTES = 64 << 20;

let check: ValidateFunction | undefined;

function roundHeaderSchema(): Record<string, unknown> {
  return {
    type: 'object', additionalProperties: false, required: ['round', 'final', 'segments'],
    properties: {
      round: { type: 'integer', minimum: 0, maximum: 1_000_000 },
      final: { type: 'boolean' },
      finish: { type: 'boolean' },
      state_after_base: { type: 'boolean' },
      base_state_sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
      segments: { type: 'array', maxItems: LIMITS.segments, items: segmentEntrySchema() },
      units: { type: 'array', minItems: 1, maxItems: LIMITS.segments, items: compressionUnitSchema() },
    },
  };
}

/**
 * Checks a parsed round header: schema, then runs inside `limits.chunks` and ascending per image,
 * the device state in the final round only, exactly once. Throws BadInput/Corrupt naming the field.
 */
export function checkRoundHeader(raw: unknown, round: number, limits: RoundLimits): RoundHeader {
  check ??= compileFormatSchema(roundHeaderSchema());
  if (!check(raw)) throw new CloudletError('BadInput', `handoff round ${round}: ${describeSchemaError(check.errors![0], 'the round header')}`);
  const h = raw as RoundHeader;
  if (h.round !== round) throw new CloudletError('BadInput', `handoff round body says round ${h.round}, the URL ${round}`);
  const what = `handoff round ${round}`;
  const states = checkSegmentEntries(h.segments, limits.chunks, what);
  if (h.final && states !== 1) throw new CloudletError('BadInput', `${what}: the final round must carry exactly one device-state segment, it has ${states}`);
  if (!h.final && states !== 0) throw new CloudletError('BadInput', `${what}: only the final round carries the device state`);
  if (h.finish && !h.final) throw new CloudletError('BadInput', `${what}: only the final round may ask to finish`);
  if (h.state_after_base && !h.final) throw new CloudletError('BadInput', `${what}: only the final round carries a device state (state_after_base)`);
  if (h.state_after_base && !h.base_state_sha256) throw new CloudletError('BadInput', `${what}: state_after_base needs base_state_sha256 (the base state it continues)`);
  if (h.units) {
    if (!limits.units) throw new CloudletError('BadInput', `${what}: carries xz compression units, which this destination did not offer (feature xz-units)`);
    if (h.final) throw new CloudletError('BadInput', `${what}: the final round does not carry compression units`);
    checkCompressionUnits(h.units, h.segments, (why) => new CloudletError('BadInput', `${what}: ${why}`));
  }
  // What the body holds: the units' bytes, or the segments'.
  const total = (h.units ?? h.segments).reduce((n, s) => n + s.size, 0);
  if (total > limits.maxBytes) {
    throw new CloudletError('BadInput', `${what}: its segments add up to ${total} bytes, over the limit of ${limits.maxBytes}`, { status: 413 });
  }
  return h;
}

/** Reads exact byte counts from a stream of chunks, keeping only what was asked for and not yet taken. */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private have = 0;
  received = 0;

  constructor(body: AsyncIterable<Buffer | Uint8Array>, private readonly maxBytes: number) {
    this.it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Exactly n bytes; `what` names them when the body ends first. */
  async read(n: number, what: string): Promise<Buffer> {
    while (this.have < n) {
      if (!(await this.more())) throw new CloudletError('BadInput', `handoff round body ended inside ${what} (${this.received} bytes received)`);
    }
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.have = rest.length;
    return out;
  }

  /** The next 1..max bytes as they come (what is already here, else the next piece); `what` names them when the body ends first. */
  async readUpTo(max: number, what: string): Promise<Buffer> {
    if (this.have === 0 && !(await this.more())) throw new CloudletError('BadInput', `handoff round body ended inside ${what} (${this.received} bytes received)`);
    const first = this.pending[0];
    const n = Math.min(max, first.length);
    if (n === first.length) this.pending.shift(); else this.pending[0] = first.subarray(n);
    this.have -= n;
    return first.subarray(0, n);
  }

  /** Whether the body has no byte left. */
  async atEnd(): Promise<boolean> {
    return this.have === 0 && !(await this.more());
  }

  private async more(): Promise<boolean> {
    const r = await this.it.next();
    if (r.done) return false;
    const c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    this.received += c.length;
    if (this.received > this.maxBytes) throw new CloudletError('BadInput', `handoff round is over the limit of ${this.maxBytes} bytes`, { status: 413 });
    this.pending.push(c);
    this.have += c.length;
    return true;
  }
}

/**
 * A segment of a round as read: `data` its compressed bytes (checked when applied: fetchSegment), or,
 * `decoded`, its decompressed bytes already checked against its content name (a round with units).
 */
export interface RoundSegment { entry: SegmentEntry; data: Buffer; decoded?: boolean }

export interface RoundStream {
  header: RoundHeader;
  /**
   * The segments in header order, each exactly its declared size; throws if the body is short or has
   * bytes after the last. A round with units: decoded while the body arrives (unitSegments).
   */
  segments(): AsyncGenerator<RoundSegment>;
  /** Bytes of the body read so far. */
  readonly received: number;
}

/**
 * Opens a round body: reads and checks the header (nothing else is read before it passed), then
 * hands out the segments one by one as they arrive.
 */
export async function openRound(body: AsyncIterable<Buffer | Uint8Array>, round: number, limits: RoundLimits): Promise<RoundStream> {
  const r = new ByteReader(body, limits.maxBytes);
  const hl = (await r.read(4, 'the 4-byte header length')).readUInt32BE(0);
  if (hl === 0 || hl > ROUND_HEADER_MAX_BYTES || hl > limits.maxBytes - 4) {
    throw new CloudletError('BadInput', `handoff round ${round}: header length ${hl} is outside 1..${Math.min(ROUND_HEADER_MAX_BYTES, limits.maxBytes - 4)} bytes`);
  }
  const text = (await r.read(hl, 'the round header')).toString('utf8');
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) {
    throw new CloudletError('BadInput', `handoff round ${round}: header is not JSON: ${(e as Error).message}`);
  }
  const header = checkRoundHeader(raw, round, { ...limits, maxBytes: limits.maxBytes - 4 - hl });
  async function* segments(): AsyncGenerator<RoundSegment> {
    if (header.units) {
      yield* unitSegments({ readUpTo: (max, what) => r.readUpTo(max, what), atEnd: () => r.atEnd() }, header.units, header.segments, `handoff round ${round}`);
      return;
    }
    for (const entry of header.segments) yield { entry, data: await r.read(entry.size, `segment ${entry.digest}`) };
    if (!(await r.atEnd())) throw new CloudletError('BadInput', `handoff round ${round}: the body has bytes after its last segment`);
  }
  return { header, segments, get received() { return r.received; } };
}

/**
 * A round's units, each decoded as its bytes arrive (decodeUnitStream: synthesis's bounds, the
 * unit's name checked at its end), so the last unit is decoded when its last byte comes, not all
 * after it (4.3 s of round 0's 25 Mbit/s tail for the Debian guest's wire overlay when each unit
 * was read whole first); each unit's output cut into its segments, each checked against its
 * content name (rawDigest) before it is handed on, at most UNIT_QUEUE_BYTES of them waiting. A
 * decoder place is shared with every synthesis of the process: it is given back whenever the
 * source's bytes are not at hand (fromPeer), so a source that sends slowly or stops holds none.
 */
export async function* unitSegments(r: UnitBytes, units: CompressionUnit[], entries: SegmentEntry[], what: string): AsyncGenerator<RoundSegment> {
  const queue = new SegmentQueue(UNIT_QUEUE_BYTES);
  const stop = new AbortController();
  const producer = (async () => {
    let k = 0;
    for (const unit of units) {
      await decodeUnitInto(unit, entries.slice(k, k + unit.segments), (max) => r.readUpTo(max, `compression unit ${unit.digest}`), queue, what, stop.signal, true);
      k += unit.segments;
    }
    if (!(await r.atEnd())) throw new CloudletError('BadInput', `${what}: the body has bytes after its last compression unit`);
    queue.end();
  })();
  producer.catch((e: unknown) => queue.fail(e));
  try {
    for (let item; (item = await queue.pop());) yield item;
  } finally {
    // The applier stopped (done, or failed): the decoder stops at its next slice and lets go of its place.
    stop.abort();
    queue.fail(new CloudletError('Cancelled', `${what}: no longer read`));
  }
}

/**
 * unitSegments over units already in memory (the source's own launch overlay): every unit decodes at
 * once, each into its own queue (the process's limit of two decoders at once still holds, taken in
 * unit order), handed on in order: two cores decode two units side by side.
 */
export async function* bufferedUnitSegments(data: Buffer[], units: CompressionUnit[], entries: SegmentEntry[], what: string): AsyncGenerator<RoundSegment> {
  const stop = new AbortController();
  const queues = units.map(() => new SegmentQueue(UNIT_QUEUE_BYTES));
  let k = 0;
  units.forEach((unit, i) => {
    const held = entries.slice(k, k + unit.segments);
    k += unit.segments;
    const bytes = bufferUnitBytes([data[i]]);
    (async () => {
      await decodeUnitInto(unit, held, (max) => bytes.readUpTo(max, `compression unit ${unit.digest}`), queues[i], what, stop.signal);
      if (!(await bytes.atEnd())) throw new CloudletError('Corrupt', `${what}: compression unit ${unit.digest} has bytes after its stream`);
      queues[i].end();
    })().catch((e: unknown) => queues[i].fail(e));
  });
  try {
    for (const q of queues) for (let item; (item = await q.pop());) yield item;
  } finally {
    stop.abort();
    for (const q of queues) q.fail(new CloudletError('Cancelled', `${what}: no longer read`));
  }
}

/**
 * One unit decoded (decodeUnitStream) from `read`, its output cut into its segments `held`, each
 * checked against its content name before it goes into `queue`.
 */
async function decodeUnitInto(unit: CompressionUnit, held: SegmentEntry[], read: (max: number) => Promise<Buffer>, queue: SegmentQueue, what: string, signal: AbortSignal,
  fromPeer = false): Promise<void> {
  let seg = 0, have = 0;
  let parts: Buffer[] = [];
  // Hands on every segment complete so far (one of 0 bytes too: its records are refused when applied).
  const ready = async () => {
    while (seg < held.length && have === held[seg].rawSize) {
      const e = held[seg];
      const raw = parts.length === 1 ? parts[0] : Buffer.concat(parts, have);
      const name = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
      if (name !== e.rawDigest) throw new CloudletError('Corrupt', `${what}: segment ${e.digest} cut from compression unit ${unit.digest} has content ${name}; refused`);
      seg++; have = 0; parts = [];
      await queue.push({ entry: e, data: raw, decoded: true }, raw.length);
    }
  };
  await ready();
  await decodeUnitStream(unit, read, async (b) => {
    for (let off = 0; off < b.length;) {
      // The unit's total is its segments' (checked with the header) and never passes it (the decoder stops first).
      const take = Math.min(held[seg].rawSize - have, b.length - off);
      parts.push(b.subarray(off, off + take));
      have += take; off += take;
      await ready();
    }
  }, signal, { fromPeer });
  await ready();
  if (seg !== held.length) throw new CloudletError('Internal', `${what}: compression unit ${unit.digest} ended before its segments`);
}

/** Where unitSegments reads the units' bytes: the next 1..max bytes, and whether none is left after the last unit. */
export interface UnitBytes {
  readUpTo(max: number, what: string): Promise<Buffer>;
  atEnd(): Promise<boolean>;
}

/** UnitBytes over buffers held in memory (the source's own launch overlay units), one after the other. */
export function bufferUnitBytes(data: Buffer[]): UnitBytes {
  let i = 0, off = 0;
  const skip = () => { while (i < data.length && off >= data[i].length) { i++; off = 0; } };
  return {
    async readUpTo(max, what) {
      skip();
      if (i >= data.length) throw new CloudletError('Corrupt', `${what}: its bytes ended`);
      const n = Math.min(max, data[i].length - off);
      off += n;
      return data[i].subarray(off - n, off);
    },
    async atEnd() { skip(); return i >= data.length; },
  };
}

/** Decoded segments between the unit decoder and the applier: bounded in bytes (one always fits). */
class SegmentQueue {
  private readonly items: Array<{ item: RoundSegment; bytes: number }> = [];
  private bytes = 0;
  private ended = false;
  private error: unknown;
  private wake?: () => void;
  private room?: () => void;

  constructor(private readonly maxBytes: number) {}

  async push(item: RoundSegment, bytes: number): Promise<void> {
    while (this.error === undefined && this.items.length && this.bytes + bytes > this.maxBytes) await new Promise<void>((r) => { this.room = r; });
    if (this.error !== undefined) throw this.error;
    this.items.push({ item, bytes });
    this.bytes += bytes;
    this.wake?.();
  }

  end(): void { this.ended = true; this.wake?.(); }

  fail(e: unknown): void {
    this.error ??= e;
    this.wake?.();
    this.room?.();
  }

  /** The next segment; undefined at the end; throws what failed the producer. */
  async pop(): Promise<RoundSegment | undefined> {
    for (;;) {
      if (this.error !== undefined) throw this.error;
      const x = this.items.shift();
      if (x) {
        this.bytes -= x.bytes;
        const r = this.room;
        this.room = undefined;
        r?.();
        return x.item;
      }
      if (this.ended) return undefined;
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = undefined;
    }
  }
}
