/**
 * QEMU's live-migration stream (QEMU 7.2, precopy, no compression/xbzrle/multifd/postcopy), read as
 * a dirty-page log. A handoff runs QEMU's own migration into a unix socket we serve: QEMU tracks the
 * pages the guest writes, sends them again each iteration and decides by itself when to stop the VM
 * (its downtime budget); this parser hands every RAM page to the caller as it arrives, and keeps
 * what a destination needs besides RAM: the stream's header and configuration, the RAM section's
 * block list, and everything after the RAM section's END (the device state, the EOF, the VM
 * description). buildIgnoreSharedState() then writes the device-state stream an incoming QEMU with
 * x-ignore-shared loads: the shared guest RAM ("mem") left out, the small non-shared blocks (ROMs,
 * option ROMs) in full, the device sections as QEMU sent them.
 *
 * Layout (migration/savevm.c, migration/ram.c): "QEVM" u32 3; 0x07 configuration (u32 len, name,
 * subsections 0x05); sections: 0x01 START (u32 id, u8 len, idstr, u32 instance, u32 version, body),
 * 0x02 PART / 0x03 END (u32 id, body), each followed by the footer 0x7e u32 id. A RAM body is records
 * of u64 (offset | flags): MEM_SIZE 0x04 (block list), ZERO 0x02 (+1 byte), PAGE 0x08 (+4096 bytes),
 * EOS 0x10 (end of body); CONTINUE 0x20 means "same block as the record before", otherwise u8 len +
 * idstr follow the u64. Anything else (another iterative section, compression, a command) is refused
 * with a message: the caller then falls back to comparing the whole RAM.
 */
import { CloudletError } from '../common/errors';

export const PAGE_SIZE = 4096;
const MAGIC = 0x5145564d;
const VERSION = 3;
const SEC = { EOF: 0x00, START: 0x01, PART: 0x02, END: 0x03, FULL: 0x04, SUBSECTION: 0x05, VMDESCRIPTION: 0x06, CONFIGURATION: 0x07, FOOTER: 0x7e } as const;
/** How QEMU's VM description (the stream's last item) begins (migration/savevm.c, json-writer). */
const VMDESC_START = Buffer.from('{"page_size": ', 'latin1');
const F = { ZERO: 0x02, MEM_SIZE: 0x04, PAGE: 0x08, EOS: 0x10, CONTINUE: 0x20 } as const;
const KNOWN_FLAGS = F.ZERO | F.MEM_SIZE | F.PAGE | F.EOS | F.CONTINUE;
/** An idstr or name longer than this is not a stream we understand. */
const MAX_NAME = 255;

export interface RamBlock { id: string; length: number; addr?: bigint }

export interface StreamHandler {
  /**
   * One RAM page: `data` is its 4096 bytes (a view into the socket's buffer: copy what is kept), or
   * undefined for a zero page. `final`: sent after the VM stopped.
   */
  page(block: string, offset: number, data: Buffer | undefined, final: boolean): void;
  /** The RAM section's END began: QEMU stopped the VM and its last pages follow. */
  finalPass?(): void;
  /** QEMU's last pages were all parsed (the RAM section's END ended); the device state follows. */
  completing?(): void;
}

class NeedMore extends Error {}
/** pageAt(): the record is not all here / is not a page record. */
const NEED_MORE = -1, NOT_A_PAGE = -2;
/** Bytes of the next chunk joined to an item cut by the previous one: more than any page record. */
const JOIN = 2 * PAGE_SIZE;
const EMPTY = Buffer.alloc(0);

/** Reads from a byte window; throws NeedMore when the item is not all there yet (the caller rewinds). */
class Cursor {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  need(n: number): void { if (this.pos + n > this.buf.length) throw new NeedMore(); }
  u8(): number { this.need(1); return this.buf[this.pos++]; }
  u32(): number { this.need(4); const v = this.buf.readUInt32BE(this.pos); this.pos += 4; return v; }
  u64(): bigint { this.need(8); const v = this.buf.readBigUInt64BE(this.pos); this.pos += 8; return v; }
  bytes(n: number): Buffer { this.need(n); const b = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return b; }
  name(what: string): string {
    const n = this.u8();
    if (n === 0) throw corrupt(`empty ${what}`);
    return this.bytes(n).toString('latin1');
  }
}

function corrupt(msg: string): CloudletError { return new CloudletError('Corrupt', `QEMU migration stream: ${msg}`); }
function unsupported(msg: string): CloudletError { return new CloudletError('Internal', `QEMU migration stream: not understood: ${msg}`); }

type State = 'magic' | 'section' | 'ram' | 'footer' | 'tail';

export class MigrationStreamParser {
  /** The 8 header bytes and the raw configuration section (0x07 ...), as QEMU sent them. */
  header?: Buffer;
  configuration?: { name: string; subsections: { name: string; version: number; body: Buffer }[] };
  ram?: { sectionId: number; instance: number; version: number; blocks: RamBlock[] };
  /** Everything after the RAM section's END footer: device sections, EOF, VM description. */
  readonly tail: Buffer[] = [];
  /** RAM pages parsed so far (zero and data), for progress. */
  pages = 0;
  private state: State = 'magic';
  private rest: Buffer = Buffer.alloc(0);
  private kind: 'setup' | 'iterate' | 'complete' = 'setup';
  private block?: string;
  private ended = false;
  private readonly lengths = new Map<string, number>();

  constructor(private readonly h: StreamHandler, private readonly o: { ignoreShared?: boolean } = {}) {}

  /** True once the RAM section's END was parsed (the VM is stopped; the rest is device state). */
  get completing(): boolean { return this.state === 'tail'; }

  /**
   * Parses as much of `chunk` (after what was left over) as forms whole items. QEMU's last pass is
   * part of the pause, so the page records are read in place: no BigInt, no exception at a chunk's
   * end, and only the item cut by the previous chunk is joined (with the next JOIN bytes), not the
   * whole chunk.
   */
  push(chunk: Buffer): void {
    if (this.ended) throw corrupt('data after the end');
    if (this.state === 'tail') { this.tail.push(Buffer.from(chunk)); return; }
    let start = 0;
    if (this.rest.length) {
      const restLen = this.rest.length;
      let head = Buffer.concat([this.rest, chunk.subarray(0, JOIN)]);
      let used = this.parse(head, 0, restLen);
      if (used < restLen && !this.completing && chunk.length > JOIN) {
        // An item longer than JOIN (a configuration naming many capabilities): join it all.
        head = Buffer.concat([this.rest, chunk]);
        used = this.parse(head, 0, head.length);
        this.rest = EMPTY;
        if (this.completing) { if (used < head.length) this.tail.push(head.subarray(used)); } else this.rest = Buffer.from(head.subarray(used));
        return;
      }
      if (this.completing) {
        if (used < restLen) this.tail.push(Buffer.from(head.subarray(used, restLen)));
        const from = Math.max(0, used - restLen);
        if (from < chunk.length) this.tail.push(Buffer.from(chunk.subarray(from)));
        this.rest = EMPTY;
        return;
      }
      if (used < restLen) { this.rest = Buffer.from(head.subarray(used)); return; } // the chunk was all in head
      start = used - restLen;
      this.rest = EMPTY;
    }
    const mark = this.parse(chunk, start, chunk.length);
    if (this.completing) { if (mark < chunk.length) this.tail.push(Buffer.from(chunk.subarray(mark))); return; }
    // Copy the remainder: `chunk` may be a pooled buffer the socket reuses.
    this.rest = mark < chunk.length ? Buffer.from(chunk.subarray(mark)) : EMPTY;
  }

  /**
   * Parses whole items of `buf` from `pos` while an item begins before `until` and the RAM section
   * has not ended; returns where the first unparsed item begins.
   */
  private parse(buf: Buffer, pos: number, until: number): number {
    let c: Cursor | undefined;
    while (pos < until && pos < buf.length && this.state !== 'tail') {
      if (this.state === 'ram') {
        const next = this.pageAt(buf, pos);
        if (next === NEED_MORE) return pos;
        if (next >= 0) { pos = next; continue; }
      }
      // Anything else (rare: headers, sections, the block list, EOS) through the cursor.
      c ??= new Cursor(buf);
      c.pos = pos;
      try { this.step(c); } catch (e) { if (e instanceof NeedMore) return pos; throw e; }
      pos = c.pos;
    }
    return pos;
  }

  /**
   * A ZERO or PAGE record at `pos`, read in place: the position after it, NEED_MORE if it is not
   * all here, or NOT_A_PAGE for any other record (the cursor path reads and checks those).
   */
  private pageAt(buf: Buffer, pos: number): number {
    if (pos + 8 > buf.length) return NEED_MORE;
    const hi = buf.readUInt32BE(pos), lo = buf.readUInt32BE(pos + 4);
    const flags = lo & 0xfff;
    if ((flags & ~F.CONTINUE) !== F.PAGE && (flags & ~F.CONTINUE) !== F.ZERO) return NOT_A_PAGE;
    const offset = hi * 0x1_0000_0000 + (lo - flags);
    let at = pos + 8;
    let block = this.block;
    if (!(flags & F.CONTINUE)) {
      if (at + 1 > buf.length) return NEED_MORE;
      const n = buf[at];
      if (at + 1 + n > buf.length) return NEED_MORE;
      if (n === 0) throw corrupt('empty RAM block name');
      block = buf.toString('latin1', at + 1, at + 1 + n);
      at += 1 + n;
    }
    const size = flags & F.ZERO ? 1 : PAGE_SIZE;
    if (at + size > buf.length) return NEED_MORE;
    if (block === undefined) throw corrupt('a RAM page continues no block');
    const len = this.lengths.get(block);
    if (len === undefined) throw corrupt(`page of unknown RAM block ${block}`);
    if (offset + PAGE_SIZE > len) throw corrupt(`page at ${offset} outside RAM block ${block} (${len} bytes)`);
    let data: Buffer | undefined;
    if (flags & F.ZERO) {
      if (buf[at] !== 0) throw unsupported(`page filled with byte ${buf[at]}`);
    } else {
      data = buf.subarray(at, at + PAGE_SIZE);
    }
    this.block = block;
    this.pages++;
    this.h.page(block, offset, data, this.kind === 'complete');
    return at + size;
  }

  /** Bytes after the RAM section's END so far (device sections, EOF, VM description). */
  get tailBytes(): number { return this.tail.reduce((n, b) => n + b.length, 0); }

  /**
   * Whether what arrived after the RAM section ends with QEMU's last item, the VM description
   * (QEMU_VM_EOF, then 0x06, u32 length, the JSON `{"page_size": ...}` of exactly that length), so
   * the device state is all here before QEMU closes the socket (which its main loop does later,
   * 20-130 ms after the last byte under load). Device sections cannot be skipped item by item
   * (FULL sections carry no length), so this looks at the end only; the caller still waits for the
   * stream's end, and checks that nothing followed, before the destination may run the VM.
   */
  get tailComplete(): boolean {
    if (this.state !== 'tail' || !this.tail.length) return false;
    const last = this.tail[this.tail.length - 1];
    if (last[last.length - 1] !== 0x7d) return false; // '}'
    if (this.tail.length > 1) { const t = Buffer.concat(this.tail); this.tail.length = 0; this.tail.push(t); }
    const t = this.tail[0];
    const at = t.lastIndexOf(VMDESC_START);
    return at >= 6 && t[at - 6] === SEC.EOF && t[at - 5] === SEC.VMDESCRIPTION && t.readUInt32BE(at - 4) === t.length - at;
  }

  /** The stream ended: it must have reached the device state (tail) with nothing half-read. */
  end(): void {
    this.ended = true;
    if (this.state !== 'tail') throw corrupt(`ended before the device state (${this.rest.length} bytes of an unfinished item, state ${this.state})`);
    const t = Buffer.concat(this.tail);
    if (!t.length || t.indexOf(SEC.EOF) < 0) throw corrupt('ended without its EOF marker');
    this.tail.length = 0;
    this.tail.push(t);
  }

  private step(c: Cursor): void {
    switch (this.state) {
      case 'magic': {
        const m = c.u32(), v = c.u32();
        if (m !== MAGIC || v !== VERSION) throw corrupt(`not a QEMU stream (magic ${m.toString(16)}, version ${v})`);
        this.header = Buffer.from(c.buf.subarray(c.pos - 8, c.pos));
        this.state = 'section';
        return;
      }
      case 'section': return this.section(c);
      case 'ram': return this.ramRecord(c);
      case 'footer': {
        const t = c.u8();
        if (t !== SEC.FOOTER) throw corrupt(`expected a section footer, got byte ${t}`);
        const id = c.u32();
        if (id !== this.ram!.sectionId) throw corrupt(`footer of section ${id} after section ${this.ram!.sectionId}`);
        this.state = this.kind === 'complete' ? 'tail' : 'section';
        if (this.state === 'tail') this.h.completing?.();
        return;
      }
      default: throw corrupt(`unexpected state ${this.state}`);
    }
  }

  private section(c: Cursor): void {
    const t = c.u8();
    if (t === SEC.CONFIGURATION) {
      if (this.configuration || this.ram) throw corrupt('a second configuration section');
      const len = c.u32();
      if (len > MAX_NAME) throw corrupt(`machine name of ${len} bytes`);
      const name = c.bytes(len).toString('latin1');
      const subsections: { name: string; version: number; body: Buffer }[] = [];
      for (;;) {
        c.need(1); // whether a subsection follows
        if (c.buf[c.pos] !== SEC.SUBSECTION) break;
        c.pos++;
        const sub = c.name('subsection name');
        const version = c.u32();
        const start = c.pos;
        if (sub === 'configuration/target-page-bits') c.u32();
        else if (sub === 'configuration/capabilities') { const n = c.u32(); if (n > 64) throw corrupt(`${n} capabilities`); for (let i = 0; i < n; i++) c.name('capability'); }
        else if (sub === 'configuration/uuid') c.bytes(16);
        else throw unsupported(`unknown configuration subsection ${sub}`);
        subsections.push({ name: sub, version, body: Buffer.from(c.buf.subarray(start, c.pos)) });
      }
      this.configuration = { name, subsections };
      return;
    }
    if (t === SEC.START) {
      const id = c.u32(), idstr = c.name('section name'), instance = c.u32(), version = c.u32();
      if (idstr !== 'ram') throw unsupported(`iterative section ${idstr} (only RAM is understood)`);
      if (this.ram) throw corrupt('a second RAM section');
      this.ram = { sectionId: id, instance, version, blocks: [] };
      this.kind = 'setup';
      this.block = undefined;
      this.state = 'ram';
      return;
    }
    if (t === SEC.PART || t === SEC.END) {
      const id = c.u32();
      if (!this.ram || id !== this.ram.sectionId) throw unsupported(`section ${id} is not the RAM section`);
      this.kind = t === SEC.END ? 'complete' : 'iterate';
      this.state = 'ram';
      if (t === SEC.END) this.h.finalPass?.();
      return;
    }
    throw unsupported(`section type ${t} before the RAM section ended`);
  }

  private ramRecord(c: Cursor): void {
    const v = c.u64();
    const flags = Number(v & 0xfffn);
    const offset = v & ~0xfffn;
    if (flags & ~KNOWN_FLAGS) throw unsupported(`RAM record flags 0x${flags.toString(16)} (compression, xbzrle or RDMA are not understood)`);
    if (flags & F.EOS) {
      if (flags !== F.EOS) throw corrupt(`EOS with flags ${flags.toString(16)}`);
      this.state = 'footer';
      return;
    }
    if (flags & F.MEM_SIZE) {
      if (this.kind !== 'setup' || this.ram!.blocks.length) throw corrupt('block list outside the RAM setup');
      let left = offset;
      const blocks: RamBlock[] = [];
      while (left > 0n) {
        const id = c.name('RAM block name');
        const length = c.u64();
        const addr = this.o.ignoreShared ? c.u64() : undefined;
        if (length === 0n || length > left || length % BigInt(PAGE_SIZE)) throw corrupt(`RAM block ${id} of ${length} bytes (${left} left of the total)`);
        left -= length;
        blocks.push({ id, length: Number(length), ...(addr !== undefined ? { addr } : {}) });
      }
      this.ram!.blocks = blocks;
      for (const b of blocks) this.lengths.set(b.id, b.length);
      return;
    }
    if (!(flags & (F.ZERO | F.PAGE)) || (flags & F.ZERO && flags & F.PAGE)) throw unsupported(`RAM record flags 0x${flags.toString(16)}`);
    let block = this.block;
    if (!(flags & F.CONTINUE)) block = c.name('RAM block name');
    if (block === undefined) throw corrupt('a RAM page continues no block');
    const len = this.lengths.get(block);
    if (len === undefined) throw corrupt(`page of unknown RAM block ${block}`);
    if (offset + BigInt(PAGE_SIZE) > BigInt(len)) throw corrupt(`page at ${offset} outside RAM block ${block} (${len} bytes)`);
    let data: Buffer | undefined;
    if (flags & F.ZERO) {
      const fill = c.u8();
      if (fill !== 0) throw unsupported(`page filled with byte ${fill}`);
    } else {
      data = c.bytes(PAGE_SIZE);
    }
    this.block = block;
    this.pages++;
    this.h.page(block, Number(offset), data, this.kind === 'complete');
  }
}

// -------------------------------------------------------------------------------- writing

function u32(v: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; }
function u64(v: bigint): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64BE(v); return b; }
function name(s: string): Buffer { const n = Buffer.from(s, 'latin1'); return Buffer.concat([Buffer.from([n.length]), n]); }

/** Pages of the RAM blocks other than the shared one, by block and offset (undefined: a zero page). */
export type BlockPages = Map<string, Map<number, Buffer | undefined>>;

/**
 * The device-state stream of a parsed migration for an incoming QEMU with x-ignore-shared: the
 * same header and configuration plus the capabilities subsection naming x-ignore-shared (the
 * destination checks it), the RAM setup with each block's guest address (0 for `shared`: its
 * memory backend is not mapped directly), one END section with every page of the other blocks
 * (`pages`, zero pages as ZERO records), and the device sections exactly as QEMU sent them (the
 * VM description after them left empty: withoutVmDescription).
 */
export function buildIgnoreSharedState(p: MigrationStreamParser, shared: string, pages: BlockPages): Buffer {
  const ram = completeRam(p, shared);
  return Buffer.concat([...streamHead(p), ...pagesSection(SEC.END, ram, shared, pages), withoutVmDescription(Buffer.concat(p.tail))]);
}

/**
 * A device state saved by QEMU with x-ignore-shared (a base's state.bin), parsed: its head and the
 * pages of its other RAM blocks (ROMs, ACPI tables: 460 KB of the test guest's 678 KB state).
 */
export interface SavedState { parser: MigrationStreamParser; pages: BlockPages }

export function parseSavedState(data: Buffer): SavedState {
  const pages: BlockPages = new Map();
  const parser = new MigrationStreamParser({
    page: (block, offset, d) => { let m = pages.get(block); if (!m) pages.set(block, (m = new Map())); m.set(offset, d ? Buffer.from(d) : undefined); },
  }, { ignoreShared: true });
  parser.push(data);
  parser.end();
  return { parser, pages };
}

/**
 * Whether a migration can continue after `base`'s prefix (statePrefix): the same header, machine,
 * configuration (the capabilities aside: both are written as x-ignore-shared), RAM section (id,
 * instance, version) and RAM blocks (names, lengths, order). Then the same QEMU and machine made both.
 */
export function continuesSavedState(p: MigrationStreamParser, base: SavedState): boolean {
  const b = base.parser;
  if (!p.header || !b.header || !p.configuration || !b.configuration || !p.ram || !b.ram) return false;
  if (!p.header.equals(b.header) || p.configuration.name !== b.configuration.name) return false;
  const subs = (x: MigrationStreamParser) => x.configuration!.subsections.filter((s) => s.name !== 'configuration/capabilities');
  const ps = subs(p), bs = subs(b);
  if (ps.length !== bs.length || ps.some((s, i) => s.name !== bs[i].name || s.version !== bs[i].version || !s.body.equals(bs[i].body))) return false;
  const pr = p.ram, br = b.ram;
  if (pr.sectionId !== br.sectionId || pr.instance !== br.instance || pr.version !== br.version || pr.blocks.length !== br.blocks.length) return false;
  return pr.blocks.every((x, i) => x.id === br.blocks[i].id && x.length === br.blocks[i].length);
}

/**
 * What a destination holding the base writes before a state made by stateAfterSaved(): the saved
 * state's head (header, configuration, RAM setup) and every page of its other blocks as a PART
 * section, as QEMU's own pre-copy would have sent them while the VM ran.
 */
export function statePrefix(base: SavedState, shared: string): Buffer {
  const ram = ramOf(base.parser, shared);
  return Buffer.concat([...streamHead(base.parser), ...pagesSection(SEC.PART, ram, shared, base.pages)]);
}

/**
 * The device state of a parsed migration as the continuation of `base`'s prefix (statePrefix;
 * continuesSavedState must hold): the END section with only the pages of the other blocks that
 * differ from the saved state's, then the device sections (VM description left empty).
 */
export function stateAfterSaved(p: MigrationStreamParser, shared: string, pages: BlockPages, base: SavedState): Buffer {
  const ram = completeRam(p, shared);
  const differs = (block: string, off: number, data: Buffer | undefined) => {
    const b = base.pages.get(block)?.get(off);
    return !(base.pages.get(block)?.has(off)) || (data === undefined ? b !== undefined : b === undefined || !b.equals(data));
  };
  return Buffer.concat([...pagesSection(SEC.END, ram, shared, pages, differs), withoutVmDescription(Buffer.concat(p.tail))]);
}

/** The first bytes of a state made by stateAfterSaved() for a RAM section `sectionId`. */
export function continuationStart(sectionId: number): Buffer { return Buffer.concat([Buffer.from([SEC.END]), u32(sectionId)]); }

function ramOf(p: MigrationStreamParser, shared: string): NonNullable<MigrationStreamParser['ram']> {
  if (!p.header || !p.configuration || !p.ram) throw new CloudletError('Internal', 'the migration stream has no RAM setup');
  if (!p.ram.blocks.some((b) => b.id === shared)) throw corrupt(`no RAM block ${shared}`);
  return p.ram;
}

function completeRam(p: MigrationStreamParser, shared: string): NonNullable<MigrationStreamParser['ram']> {
  if (!p.completing) throw new CloudletError('Internal', 'the migration stream is not complete');
  return ramOf(p, shared);
}

/** Header, configuration (capabilities: x-ignore-shared) and the RAM setup section. */
function streamHead(p: MigrationStreamParser): Buffer[] {
  const { sectionId, instance, version, blocks } = p.ram!;
  const out: Buffer[] = [p.header!];
  const subs = p.configuration!.subsections.filter((s) => s.name !== 'configuration/capabilities');
  out.push(Buffer.from([SEC.CONFIGURATION]), u32(Buffer.byteLength(p.configuration!.name, 'latin1')), Buffer.from(p.configuration!.name, 'latin1'));
  const sub = (n: string, ver: number, body: Buffer) => out.push(Buffer.from([SEC.SUBSECTION]), name(n), u32(ver), body);
  // QEMU writes its subsections in this order: target-page-bits, capabilities, uuid.
  const tpb = subs.find((s) => s.name === 'configuration/target-page-bits');
  if (tpb) sub(tpb.name, tpb.version, tpb.body);
  sub('configuration/capabilities', 1, Buffer.concat([u32(1), name('x-ignore-shared')]));
  for (const s of subs) if (s !== tpb) sub(s.name, s.version, s.body);
  const total = blocks.reduce((n, b) => n + BigInt(b.length), 0n);
  out.push(Buffer.from([SEC.START]), u32(sectionId), name('ram'), u32(instance), u32(version));
  out.push(u64(total | BigInt(F.MEM_SIZE)));
  for (const b of blocks) out.push(name(b.id), u64(BigInt(b.length)), u64(b.addr ?? 0n));
  out.push(u64(BigInt(F.EOS)), Buffer.from([SEC.FOOTER]), u32(sectionId));
  return out;
}

/** A RAM PART or END section with the pages of every block but `shared` (those `take` keeps; each must have arrived). */
function pagesSection(kind: number, ram: NonNullable<MigrationStreamParser['ram']>, shared: string, pages: BlockPages,
  take: (block: string, off: number, data: Buffer | undefined) => boolean = () => true): Buffer[] {
  const out: Buffer[] = [Buffer.from([kind]), u32(ram.sectionId)];
  for (const b of ram.blocks) {
    if (b.id === shared) continue;
    const got = pages.get(b.id);
    let first = true;
    for (let off = 0; off < b.length; off += PAGE_SIZE) {
      if (!got?.has(off)) throw corrupt(`page ${off} of RAM block ${b.id} never arrived`);
      const data = got.get(off);
      if (!take(b.id, off, data)) continue;
      const flags = (data ? F.PAGE : F.ZERO) | (first ? 0 : F.CONTINUE);
      out.push(u64(BigInt(off) | BigInt(flags)));
      if (first) out.push(name(b.id));
      out.push(data ?? Buffer.from([0]));
      first = false;
    }
  }
  out.push(u64(BigInt(F.EOS)), Buffer.from([SEC.FOOTER]), u32(ram.sectionId));
  return out;
}

/**
 * The device sections with the VM description (the stream's last item: a JSON of every device's
 * fields, 46 KB of the test guest's 678 KB state) left empty: the incoming QEMU reads it and throws
 * it away (migration/savevm.c, qemu_loadvm_state), after loading the devices and before starting
 * the VM, so its bytes are only cost inside the pause. A tail not ending in one is returned as is.
 */
export function withoutVmDescription(tail: Buffer): Buffer {
  const at = tail.lastIndexOf(VMDESC_START);
  if (at < 6 || tail[at - 6] !== SEC.EOF || tail[at - 5] !== SEC.VMDESCRIPTION || tail.readUInt32BE(at - 4) !== tail.length - at) return tail;
  return Buffer.concat([tail.subarray(0, at - 4), u32(0)]);
}
