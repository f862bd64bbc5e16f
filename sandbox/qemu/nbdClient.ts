/**
 * A minimal NBD client (fixed newstyle handshake, structured replies) for one question: which
 * ranges of an export a QEMU dirty bitmap marks (meta context "qemu:dirty-bitmap:NAME", answered
 * by NBD_CMD_BLOCK_STATUS). QEMU offers its in-memory dirty bitmaps no other way (QMP only gives
 * their counts). No data is read over NBD: a node QEMU inactivated for migration must not be read
 * through it, and the caller reads the image file itself.
 * Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
 */
import * as net from 'net';
import { CloudletError, describeError } from '../common/errors';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const STRUCTURED_MAGIC = 0x668e33ef;
const SIMPLE_MAGIC = 0x67446698;
const FLAG_FIXED_NEWSTYLE = 1, FLAG_NO_ZEROES = 2;
const OPT = { GO: 7, STRUCTURED_REPLY: 8, SET_META_CONTEXT: 10 } as const;
const REP = { ACK: 1, INFO: 3, META_CONTEXT: 4 } as const;
const INFO_EXPORT = 0;
const CMD = { DISC: 2, BLOCK_STATUS: 7 } as const;
const REPLY = { NONE: 0, BLOCK_STATUS: 5 } as const;
const REPLY_FLAG_DONE = 1;
/** One block-status request covers at most this much (its length is a u32). */
const STATUS_SPAN = 1 << 30;
/** A block-status reply's payload: 8 bytes per extent (1 GiB at 4 KiB granularity is 2 MiB). */
const MAX_REPLY_BYTES = 8 << 20;

function nbdError(msg: string): CloudletError { return new CloudletError('Internal', `NBD: ${msg}`); }

/** Bytes from a socket, read as they are needed. */
class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private wait?: () => void;
  private error?: Error;

  constructor(private readonly s: net.Socket) {
    s.on('data', (d: Buffer) => { this.chunks.push(d); this.have += d.length; this.wake(); });
    s.on('error', (e) => { this.error = nbdError(describeError(e)); this.wake(); });
    s.on('close', () => { this.error ??= nbdError('the server closed the connection'); this.wake(); });
  }

  async read(n: number): Promise<Buffer> {
    while (this.have < n) {
      if (this.error) throw this.error;
      await new Promise<void>((r) => { this.wait = r; });
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.have -= n;
    return out;
  }

  private wake(): void { const w = this.wait; this.wait = undefined; w?.(); }
}

/** A byte range [offset, offset + length) of the export. */
export interface Extent { offset: number; length: number }

export class NbdBitmapClient {
  private cookie = 1n;

  private constructor(private readonly s: net.Socket, private readonly r: ByteReader, readonly size: number, private readonly contextId: number, readonly context: string) {}

  /**
   * Connects to `socket`, negotiates structured replies and the meta context of `bitmap` on
   * `exportName`, and enters the transmission phase.
   */
  static async connect(socket: string, exportName: string, bitmap: string, timeoutMs = 10_000): Promise<NbdBitmapClient> {
    const s = net.createConnection(socket);
    const r = new ByteReader(s);
    const timer = setTimeout(() => s.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
      const hello = await r.read(18);
      if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) throw nbdError('not a newstyle NBD server');
      const flags = hello.readUInt16BE(16);
      if (!(flags & FLAG_FIXED_NEWSTYLE)) throw nbdError('the server does not speak fixed newstyle');
      const cf = Buffer.alloc(4);
      cf.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES));
      s.write(cf);
      const name = Buffer.from(exportName);
      const context = `qemu:dirty-bitmap:${bitmap}`;
      const ctx = Buffer.from(context);

      sendOption(s, OPT.STRUCTURED_REPLY, Buffer.alloc(0));
      await expectAck(r, OPT.STRUCTURED_REPLY);

      sendOption(s, OPT.SET_META_CONTEXT, Buffer.concat([u32(name.length), name, u32(1), u32(ctx.length), ctx]));
      let contextId: number | undefined;
      for (;;) {
        const { type, data } = await optionReply(r, OPT.SET_META_CONTEXT);
        if (type === REP.ACK) break;
        if (type === REP.META_CONTEXT && data.length >= 4 && data.subarray(4).toString() === context) contextId = data.readUInt32BE(0);
      }
      if (contextId === undefined) throw nbdError(`the server has no ${context} on export ${exportName}`);

      sendOption(s, OPT.GO, Buffer.concat([u32(name.length), name, u16(0)]));
      let size: number | undefined;
      for (;;) {
        const { type, data } = await optionReply(r, OPT.GO);
        if (type === REP.ACK) break;
        if (type === REP.INFO && data.length >= 12 && data.readUInt16BE(0) === INFO_EXPORT) size = Number(data.readBigUInt64BE(2));
      }
      if (size === undefined) throw nbdError(`export ${exportName} did not say its size`);
      return new NbdBitmapClient(s, r, size, contextId, context);
    } catch (e) {
      s.destroy();
      throw e instanceof CloudletError ? e : nbdError(describeError(e));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Every range the bitmap marks dirty, ascending and merged. Asked while the VM is paused, so a
   * server that stops answering ends the connection after `timeoutMs` (the caller then scans).
   */
  async dirtyExtents(timeoutMs = 5_000): Promise<Extent[]> {
    const timer = setTimeout(() => this.s.destroy(new Error(`no block status within ${timeoutMs} ms`)), timeoutMs);
    try {
      return await this.readExtents();
    } finally {
      clearTimeout(timer);
    }
  }

  private async readExtents(): Promise<Extent[]> {
    const out: Extent[] = [];
    for (let off = 0; off < this.size;) {
      const len = Math.min(STATUS_SPAN, this.size - off);
      const cookie = this.cookie++;
      const req = Buffer.alloc(28);
      req.writeUInt32BE(REQUEST_MAGIC, 0);
      req.writeUInt16BE(0, 4);
      req.writeUInt16BE(CMD.BLOCK_STATUS, 6);
      req.writeBigUInt64BE(cookie, 8);
      req.writeBigUInt64BE(BigInt(off), 16);
      req.writeUInt32BE(len, 24);
      this.s.write(req);
      let covered = 0;
      for (let done = false; !done;) {
        const h = await this.r.read(4);
        const magic = h.readUInt32BE(0);
        if (magic === SIMPLE_MAGIC) {
          const rest = await this.r.read(12);
          throw nbdError(`block status refused (error ${rest.readUInt32BE(0)})`);
        }
        if (magic !== STRUCTURED_MAGIC) throw nbdError(`reply magic ${magic.toString(16)}`);
        const head = await this.r.read(16);
        const flags = head.readUInt16BE(0), type = head.readUInt16BE(2), got = head.readBigUInt64BE(4), length = head.readUInt32BE(12);
        if (got !== cookie) throw nbdError(`reply to request ${got}, expected ${cookie}`);
        if (length > MAX_REPLY_BYTES) throw nbdError(`reply of ${length} bytes to block status`);
        const payload = await this.r.read(length);
        done = (flags & REPLY_FLAG_DONE) !== 0;
        if (type & 0x8000) {
          const msg = payload.length >= 6 ? payload.subarray(6, 6 + payload.readUInt16BE(4)).toString() : '';
          throw nbdError(`block status failed (error ${payload.length >= 4 ? payload.readUInt32BE(0) : '?'}${msg ? `: ${msg}` : ''})`);
        }
        if (type === REPLY.NONE) continue;
        if (type !== REPLY.BLOCK_STATUS) throw nbdError(`unexpected reply type ${type} to block status`);
        if (payload.length < 4 || payload.readUInt32BE(0) !== this.contextId) continue; // another context
        for (let p = 4; p + 8 <= payload.length; p += 8) {
          const n = payload.readUInt32BE(p), st = payload.readUInt32BE(p + 4);
          if (n === 0 || covered + n > len) throw nbdError(`extent of ${n} bytes at ${off + covered} is outside the request`);
          if (st & 1) {
            const last = out[out.length - 1];
            if (last && last.offset + last.length === off + covered) last.length += n;
            else out.push({ offset: off + covered, length: n });
          }
          covered += n;
        }
      }
      if (covered === 0) throw nbdError(`no extent for ${off}`);
      off += covered;
    }
    return out;
  }

  /** Ends the session (NBD_CMD_DISC) and closes the socket. */
  close(): void {
    if (this.s.destroyed) return;
    const req = Buffer.alloc(28);
    req.writeUInt32BE(REQUEST_MAGIC, 0);
    req.writeUInt16BE(CMD.DISC, 6);
    req.writeBigUInt64BE(this.cookie++, 8);
    this.s.end(req);
    setTimeout(() => this.s.destroy(), 1000).unref();
  }
}

function u32(v: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; }
function u16(v: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; }

function sendOption(s: net.Socket, opt: number, data: Buffer): void {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(data.length, 12);
  s.write(Buffer.concat([h, data]));
}

async function optionReply(r: ByteReader, opt: number): Promise<{ type: number; data: Buffer }> {
  const h = await r.read(20);
  if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw nbdError('bad option reply magic');
  if (h.readUInt32BE(8) !== opt) throw nbdError(`reply to option ${h.readUInt32BE(8)}, expected ${opt}`);
  const type = h.readUInt32BE(12), len = h.readUInt32BE(16);
  if (len > 1 << 20) throw nbdError(`option reply of ${len} bytes`);
  const data = await r.read(len);
  if (type & 0x80000000) throw nbdError(`option ${opt} refused (${(type & 0x7fffffff)}): ${data.toString()}`);
  return { type, data };
}

async function expectAck(r: ByteReader, opt: number): Promise<void> {
  const { type } = await optionReply(r, opt);
  if (type !== REP.ACK) throw nbdError(`option ${opt}: reply ${type}, expected ACK`);
}
