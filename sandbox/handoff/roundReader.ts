/**
 * The destination's parser of a handoff round (protocol.ts): a round comes from another daemon and
 * is hostile input. Its header is checked exactly as strictly as an overlay manifest's segment list
 * (the same segment-entry schema, then checkSegmentEntries: runs inside the VM's RAM and disk,
 * ascending, counts bounded), and the segments' total against the body limit, before a segment
 * byte is read or anything is expanded. The body is read as a stream: one segment at a time is in
 * memory (each at most LIMITS.segmentBytes), never the whole round.
 */
import type { ValidateFunction } from 'ajv';
import { CloudletError } from '../common/errors';
import { describeSchemaError } from '../common/schemaError';
import { checkSegmentEntries, LIMITS, type SegmentEntry, type Target } from '../overlay/format';
import { compileFormatSchema, segmentEntrySchema } from '../overlay/manifestSchema';
import type { RoundHeader } from './protocol';

/** A round header's JSON is at most this long (a round of 1 TiB of RAM in ~1 MiB segments needs ~250 MiB: refused). */
export const ROUND_HEADER_MAX_BYTES = 16 << 20;

export interface RoundLimits {
  /** Chunks of the VM's RAM and disk (the destination's base): every run must lie inside. */
  chunks: Record<Target, number>;
  /** Bytes a whole round body may have (header and segments). */
  maxBytes: number;
}

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
  const total = h.segments.reduce((n, s) => n + s.size, 0);
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

export interface RoundStream {
  header: RoundHeader;
  /** The segments in header order, each exactly its declared size; throws if the body is short or has bytes after the last. */
  segments(): AsyncGenerator<{ entry: SegmentEntry; data: Buffer }>;
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
  async function* segments(): AsyncGenerator<{ entry: SegmentEntry; data: Buffer }> {
    for (const entry of header.segments) yield { entry, data: await r.read(entry.size, `segment ${entry.digest}`) };
    if (!(await r.atEnd())) throw new CloudletError('BadInput', `handoff round ${round}: the body has bytes after its last segment`);
  }
  return { header, segments, get received() { return r.received; } };
}
