/**
 * QEMU's migration stream as a dirty-page log (sandbox/qemu/migrationStream.ts): a stream laid out
 * as QEMU 7.2 writes it, fed in every kind of split, gives each page once with its block, offset and
 * phase, and the device-state stream built from it parses back in x-ignore-shared form with the
 * device sections unchanged. Streams that are not what the parser understands are refused by name.
 */
import { strict as assert } from 'assert';
import { CloudletError } from '../../sandbox/common/errors';
import {
  buildIgnoreSharedState, continuationStart, continuesSavedState, MigrationStreamParser, PAGE_SIZE, parseSavedState, stateAfterSaved, statePrefix, withoutVmDescription,
} from '../../sandbox/qemu/migrationStream';
import { downtimeBudget } from '../../sandbox/handoff/migrationTracker';

const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
const u64 = (v: number) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(v)); return b; };
const name = (s: string) => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
const page = (fill: number) => Buffer.alloc(PAGE_SIZE, fill);

const MEM = 4 * PAGE_SIZE, ROM = 2 * PAGE_SIZE;
const DEVICE_TAIL = Buffer.concat([Buffer.from([0x04]), u32(9), name('timer'), u32(0), u32(2), Buffer.from('device-bytes'), Buffer.from([0x7e]), u32(9), Buffer.from([0x00]), Buffer.from([0x06]), u32(2), Buffer.from('{}')]);

/** A stream as QEMU writes it: setup, two iterations, the END after the stop, device sections. */
function stream(o: { flags?: number; blockName?: string; offset?: number } = {}): Buffer {
  const ram = (kind: number) => Buffer.concat([Buffer.from([kind]), u32(3)]);
  const footer = Buffer.concat([Buffer.from([0x7e]), u32(3)]);
  return Buffer.concat([
    u32(0x5145564d), u32(3),
    Buffer.from([0x07]), u32(11), Buffer.from('pc-q35-7.2x'),
    Buffer.from([0x01]), u32(3), name('ram'), u32(0), u32(4),
    u64((MEM + ROM) | 0x04), name('mem'), u64(MEM), name('pc.rom'), u64(ROM), u64(0x10), footer,
    ram(0x02),
    u64(0 | 0x08), name('mem'), page(1),
    u64(PAGE_SIZE | 0x02 | 0x20), Buffer.from([0]),
    u64((o.offset ?? 2 * PAGE_SIZE) | (o.flags ?? 0x08) | 0x20), page(3),
    u64(0 | 0x08), name(o.blockName ?? 'pc.rom'), page(7),
    u64(PAGE_SIZE | 0x02 | 0x20), Buffer.from([0]),
    u64(0x10), footer,
    ram(0x02), u64(0x10), footer,
    ram(0x03),
    u64(3 * PAGE_SIZE | 0x08), name('mem'), page(4),
    u64(0 | 0x08 | 0x20), page(5),
    u64(0x10), footer,
    DEVICE_TAIL,
  ]);
}

interface Seen { block: string; offset: number; fill: number | 'zero'; final: boolean }
function parse(data: Buffer, cuts: number[], o: { ignoreShared?: boolean } = {}): { p: MigrationStreamParser; seen: Seen[]; completingAt: number } {
  const seen: Seen[] = [];
  let completingAt = -1;
  const p = new MigrationStreamParser({
    page: (block, offset, d, final) => seen.push({ block, offset, fill: d ? d[0] : 'zero', final }),
    completing: () => { completingAt = seen.length; },
  }, o);
  let at = 0;
  for (const c of [...cuts, data.length]) { if (c > at) p.push(data.subarray(at, c)); at = Math.max(at, c); }
  p.end();
  return { p, seen, completingAt };
}

describe('QEMU migration stream parser (dirty-page log)', () => {
  const expected: Seen[] = [
    { block: 'mem', offset: 0, fill: 1, final: false },
    { block: 'mem', offset: PAGE_SIZE, fill: 'zero', final: false },
    { block: 'mem', offset: 2 * PAGE_SIZE, fill: 3, final: false },
    { block: 'pc.rom', offset: 0, fill: 7, final: false },
    { block: 'pc.rom', offset: PAGE_SIZE, fill: 'zero', final: false },
    { block: 'mem', offset: 3 * PAGE_SIZE, fill: 4, final: true },
    { block: 'mem', offset: 0, fill: 5, final: true },
  ];

  it('gives every page with block, offset and phase, whole or cut into pieces of any size', () => {
    const data = stream();
    const whole = parse(data, []);
    assert.deepEqual(whole.seen, expected);
    assert.equal(whole.completingAt, expected.length, 'completing once the END section\'s pages are all in');
    assert.deepEqual(whole.p.ram?.blocks, [{ id: 'mem', length: MEM }, { id: 'pc.rom', length: ROM }]);
    assert.deepEqual(whole.p.tail, [DEVICE_TAIL]);
    for (const step of [3, 7, 100, 4095, 4097]) {
      const cuts: number[] = [];
      for (let c = step; c < data.length; c += step) cuts.push(c);
      const r = parse(data, cuts);
      assert.deepEqual(r.seen, expected, `pieces of ${step} bytes`);
      assert.deepEqual(Buffer.concat(r.p.tail), DEVICE_TAIL);
    }
  });

  it('reads an item longer than a page cut by a chunk boundary (a configuration naming many capabilities)', () => {
    const caps = Array.from({ length: 40 }, (_, i) => name(`${String(i).padStart(3, '0')}${'c'.repeat(247)}`));
    const config = Buffer.concat([Buffer.from([0x05]), name('configuration/capabilities'), u32(1), u32(caps.length), ...caps]);
    const plain = stream();
    const at = 8 + 1 + 4 + 11; // after the header and the machine name: where subsections go
    const data = Buffer.concat([plain.subarray(0, at), config, plain.subarray(at)]);
    for (const cuts of [[20], [20, 9000], [at + 3, at + 8200], [4000, 12000]]) {
      const r = parse(data, cuts);
      assert.deepEqual(r.seen, expected, `cut at ${cuts.join(', ')}`);
      assert.equal(r.p.configuration?.subsections[0].body.length, 4 + caps.reduce((n, c) => n + c.length, 0));
      assert.deepEqual(Buffer.concat(r.p.tail), DEVICE_TAIL);
    }
  });

  it('builds the x-ignore-shared device state: capabilities, block list with addresses, every other-block page, device sections unchanged', () => {
    const { p } = parse(stream(), []);
    const rom = new Map<number, Buffer | undefined>([[0, page(7)], [PAGE_SIZE, undefined]]);
    const built = buildIgnoreSharedState(p, 'mem', new Map([['pc.rom', rom]]));
    const back = parse(built, [], { ignoreShared: true });
    assert.deepEqual(back.p.configuration?.subsections.map((s) => s.name), ['configuration/capabilities']);
    assert.ok(back.p.configuration!.subsections[0].body.includes(Buffer.from('x-ignore-shared')));
    assert.deepEqual(back.p.ram?.blocks, [{ id: 'mem', length: MEM, addr: 0n }, { id: 'pc.rom', length: ROM, addr: 0n }]);
    assert.deepEqual(back.seen, [{ block: 'pc.rom', offset: 0, fill: 7, final: true }, { block: 'pc.rom', offset: PAGE_SIZE, fill: 'zero', final: true }]);
    assert.deepEqual(Buffer.concat(back.p.tail), DEVICE_TAIL);
    // A page of another block that never arrived: refused, not a state with a hole.
    assert.throws(() => buildIgnoreSharedState(p, 'mem', new Map([['pc.rom', new Map([[0, page(7)]])]])), /page 4096 of RAM block pc.rom never arrived/);
  });

  it('leaves the VM description empty (the incoming QEMU discards it), and a tail without one as it is', () => {
    const devices = Buffer.concat([Buffer.from([0x04]), u32(9), name('timer'), u32(0), u32(2), Buffer.from('{"page_size": x'), Buffer.from([0x7e]), u32(9), Buffer.from([0x00])]);
    const desc = Buffer.from('{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0}]}');
    const tail = Buffer.concat([devices, Buffer.from([0x06]), u32(desc.length), desc]);
    assert.deepEqual(withoutVmDescription(tail), Buffer.concat([devices, Buffer.from([0x06]), u32(0)]));
    // Not a VM description at the end (its length does not match, or no EOF before it): unchanged.
    const wrongLength = Buffer.concat([devices, Buffer.from([0x06]), u32(desc.length + 1), desc]);
    assert.deepEqual(withoutVmDescription(wrongLength), wrongLength);
    assert.deepEqual(withoutVmDescription(DEVICE_TAIL), DEVICE_TAIL);
  });

  it("continues a saved state: the base's head and ROM pages as a PART before, only the differing pages in the END", () => {
    const { p } = parse(stream(), []);
    const saved = parseSavedState(buildIgnoreSharedState(p, 'mem', new Map([['pc.rom', new Map<number, Buffer | undefined>([[0, page(7)], [PAGE_SIZE, undefined]])]])));
    assert.ok(continuesSavedState(p, saved));
    // The running VM changed ROM page 1 (zero in the base): only it goes in the END section.
    const now = new Map([['pc.rom', new Map<number, Buffer | undefined>([[0, page(7)], [PAGE_SIZE, page(9)]])]]);
    const rest = stateAfterSaved(p, 'mem', now, saved);
    assert.deepEqual(rest.subarray(0, 5), continuationStart(3));
    const back = parse(Buffer.concat([statePrefix(saved, 'mem'), rest]), [], { ignoreShared: true });
    assert.deepEqual(back.seen, [
      { block: 'pc.rom', offset: 0, fill: 7, final: false }, { block: 'pc.rom', offset: PAGE_SIZE, fill: 'zero', final: false },
      { block: 'pc.rom', offset: PAGE_SIZE, fill: 9, final: true },
    ]);
    assert.deepEqual(Buffer.concat(back.p.tail), DEVICE_TAIL);
    // A page back to zero where the base has data is sent too (as a zero record); equal pages are not.
    const zeroed = stateAfterSaved(p, 'mem', new Map([['pc.rom', new Map<number, Buffer | undefined>([[0, undefined], [PAGE_SIZE, undefined]])]]), saved);
    const back2 = parse(Buffer.concat([statePrefix(saved, 'mem'), zeroed]), [], { ignoreShared: true });
    assert.deepEqual(back2.seen.filter((x) => x.final), [{ block: 'pc.rom', offset: 0, fill: 'zero', final: true }]);
    // Another machine or other RAM blocks: not a continuation (the whole state goes instead).
    const other = stream();
    const at = other.indexOf(Buffer.from('pc-q35-7.2x'));
    Buffer.from('pc-q35-7.1x').copy(other, at);
    assert.equal(continuesSavedState(parse(other, []).p, saved), false);
  });

  it('refuses what it does not understand, by name', () => {
    const refuse = (data: Buffer, re: RegExp) => assert.throws(() => parse(data, []), (e: unknown) => e instanceof CloudletError && re.test(e.message));
    const good = stream();
    const bad = Buffer.from(good); bad.writeUInt32BE(0x12345678, 0);
    refuse(bad, /not a QEMU stream/);
    refuse(stream({ flags: 0x100 }), /flags 0x120 \(compression, xbzrle or RDMA/);
    refuse(stream({ flags: 0x40 }), /flags 0x60 \(compression/);
    refuse(stream({ blockName: 'nowhere' }), /unknown RAM block nowhere/);
    refuse(stream({ offset: MEM }), /outside RAM block mem/);
    refuse(good.subarray(0, good.length - DEVICE_TAIL.length), /without its EOF marker/);
    refuse(good.subarray(0, 200), /ended before the device state/);
    const block = Buffer.concat([good.subarray(0, 8), Buffer.from([0x01]), u32(5), name('block'), u32(0), u32(1)]);
    refuse(block, /iterative section block/);
  });

  it('knows the device state is all there once the VM description ended the stream, before the socket closes', () => {
    const desc = Buffer.from('{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0}]}');
    const tail = Buffer.concat([Buffer.from([0x04]), u32(9), name('timer'), u32(0), u32(2), Buffer.from('{"page_size": x'), Buffer.from([0x7e]), u32(9),
      Buffer.from([0x00, 0x06]), u32(desc.length), desc]);
    const data = Buffer.concat([stream().subarray(0, stream().length - DEVICE_TAIL.length), tail]);
    for (const step of [1, 7, 4096, data.length]) {
      const p = new MigrationStreamParser({ page: () => undefined });
      let complete = -1;
      for (let at = 0; at < data.length; at += step) {
        p.push(data.subarray(at, Math.min(data.length, at + step)));
        if (complete < 0 && p.tailComplete) complete = Math.min(data.length, at + step);
      }
      assert.equal(complete, data.length, `split ${step}: complete only with the last byte`);
      assert.equal(p.tailBytes, tail.length);
      p.end();
      assert.equal(p.tailBytes, tail.length);
    }
    // A length that does not reach the end exactly, or no EOF before it: not complete.
    const bad = (t: Buffer) => { const p = new MigrationStreamParser({ page: () => undefined }); p.push(Buffer.concat([data.subarray(0, data.length - tail.length), t])); return p.tailComplete; };
    assert.equal(bad(Buffer.concat([Buffer.from([0x00, 0x06]), u32(desc.length + 1), desc])), false);
    assert.equal(bad(Buffer.concat([Buffer.from([0x01, 0x06]), u32(desc.length), desc])), false);
    assert.equal(bad(Buffer.concat([Buffer.from([0x00, 0x06]), u32(desc.length), desc, Buffer.from('}')])), false);
  });

  it('downtime budget: as configured for 10 s, then QEMU\'s iterating 300 ms doubled every 5 s up to 2 s', () => {
    assert.equal(downtimeBudget(0, 0), 0);
    assert.equal(downtimeBudget(0, 9_999), 0);
    assert.equal(downtimeBudget(0, 10_000), 300);
    assert.equal(downtimeBudget(0, 15_000), 600);
    assert.equal(downtimeBudget(0, 20_000), 1200);
    assert.equal(downtimeBudget(0, 60_000), 2000);
    assert.equal(downtimeBudget(20, 10_000), 300);
    assert.equal(downtimeBudget(500, 15_000), 1000);
    assert.equal(downtimeBudget(5000, 60_000), 5000);
  });
});
