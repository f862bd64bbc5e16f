/**
 * Round 0 from a launch overlay stored with the wire profile (xz compression units, feature
 * xz-units): the source sends the units as stored, the destination decodes them while they arrive
 * (a unit's segments come out before its last bytes; no decoder place held while bytes are awaited)
 * with synthesis's bounds (roundReader.ts unitSegments / xzUnits.ts decodeUnitStream) and lands the
 * launch byte for byte; the source's own decode holds the same. Hostile units are refused (Corrupt or
 * BadInput, naming the unit or segment) before anything outside their segments' listed chunks is
 * written: truncated, a declared size that lies (more or less output), a bomb, a dictionary past the
 * decoder's memory limit, a unit holding another segment's content, bytes after the stream, a unit
 * whose bytes are not its name; and a destination that did not name the feature refuses units.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { createOverlay } from '../../sandbox/overlay/overlayWriter';
import { CHUNK_SIZE, encodeSegment, Encoding, LIMITS, segmentName, XZ_DECODER_MEMLIMIT, type CompressionUnit, type SegmentEntry, type Target } from '../../sandbox/overlay/format';
import { PROFILES, recompressOverlay } from '../../sandbox/overlay/recompress';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import { compressUnit, decodeUnitStream, decoderPlaces, decompressUnit } from '../../sandbox/overlay/xzUnits';
import { ShadowPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { LayerTracker } from '../../sandbox/handoff/layerTracker';
import { decodeLaunchRound, readLaunchRound } from '../../sandbox/handoff/launchRound';
import { encodeRoundBody, HANDOFF_FEATURES, type RoundHeader } from '../../sandbox/handoff/protocol';
import { RoundApplier } from '../../sandbox/handoff/roundApplier';
import { bufferedUnitSegments, openRound, UNIT_QUEUE_BYTES, unitSegments, type RoundLimits } from '../../sandbox/handoff/roundReader';
import { makePair, PAGE, type GeneratedPair } from './helpers/generatedImages';
import { assertLayerIsLaunchDisk, pieces } from './helpers/handoffRounds';
import { patchDictionary } from './helpers/xzStreams';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('handoff round 0 from a wire-profile launch overlay (xz units)', function () {
  this.timeout(120_000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let wireFile: string;
  let overlayId: string;
  let sizes: Record<Target, number>;
  let limits: RoundLimits;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xz-round-'));
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
    const made = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays'), compressor });
    const wire = await recompressOverlay(made.path, path.join(tmp, 'wire.overlay'), { codec: PROFILES.wire, compressor });
    wireFile = wire.path;
    overlayId = wire.overlayId;
    assert.equal(overlayId, made.overlayId, 'same overlay ID');
    sizes = { ram: pair.ram.length, disk: fs.statSync(pair.base.diskFile).size };
    limits = { chunks: { ram: pair.ram.length / CHUNK_SIZE, disk: pair.disk.length / CHUNK_SIZE }, maxBytes: pair.ram.length + (256 << 20), units: true };
  });
  after(async () => {
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Applies a body at a fresh destination; returns the applier (caller closes) or throws what refused it. */
  const applyAt = async (name: string, body: Buffer, l: RoundLimits = limits, piece = 7000) => {
    const a = await RoundApplier.create(path.join(tmp, name), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      const rs = await openRound(pieces(body, piece), 0, { ...l, chunks: a.chunkLimits });
      await a.apply(rs.segments(), compressor, 0, { diskSegments: rs.header.segments.filter((e) => e.target === 'disk').length });
      assert.equal(rs.received, body.length);
      return a;
    } catch (e) { a.close(); throw e; }
  };
  const refused = async (name: string, body: Buffer, pattern: RegExp, codes = ['Corrupt', 'BadInput'], l: RoundLimits = limits) => {
    const e = await applyAt(name, body, l).then((a) => { a.close(); return undefined; }, (x: unknown) => x);
    assert.ok(e !== undefined, 'refused');
    assert.ok(isCloudletError(e) && codes.includes(e.code), `a CloudletError ${codes.join('/')}, got ${String(e)}`);
    assert.match((e as Error).message, pattern);
  };
  const wireRound = async () => {
    const r = await readLaunchRound(wireFile, overlayId, pair.baseId, sizes, { units: true });
    assert.ok(!('unusable' in r), `usable: ${JSON.stringify((r as { unusable?: string }).unusable)}`);
    assert.ok(r.units && r.units.length >= 2, 'RAM and disk units');
    return r;
  };

  it('the feature is named; without it the wire-profile launch overlay is not round 0 (the source compares instead), with it the units go as stored', async () => {
    assert.ok((HANDOFF_FEATURES as readonly string[]).includes('xz-units'));
    const without = await readLaunchRound(wireFile, overlayId, pair.baseId, sizes);
    assert.ok('unusable' in without);
    assert.match(without.unusable, /xz units .*feature xz-units not named/);
    const r = await wireRound();
    const file = fs.readFileSync(wireFile);
    for (const d of r.data) assert.ok(file.includes(d), 'a unit as stored');
    assert.ok(r.segments.every((s) => s.kind === 'chunks'), 'no device state in round 0');
    assert.equal(r.units!.reduce((n, u) => n + u.segments, 0), r.segments.length);
    // A destination that did not name xz-units refuses a round with units before reading a unit byte.
    const body = encodeRoundBody({ round: 0, final: false, segments: r.segments, units: r.units }, r.data);
    await refused('no-feature', body, /compression units, which this destination did not offer \(feature xz-units\)/, ['BadInput'], { ...limits, units: false });
  });

  it('the destination decodes the units as they arrive and lands the launch byte for byte; the source\'s decode holds the same (the next compare finds nothing)', async () => {
    const r = await wireRound();
    const body = encodeRoundBody({ round: 0, final: false, segments: r.segments, units: r.units }, r.data);
    const a = await applyAt('dest', body, limits, 1000);
    try {
      assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), 'destination RAM = launch RAM');
      a.syncDiskLayer();
      assertLayerIsLaunchDisk(a.diskLayer, pair);
    } finally { a.close(); }

    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    const fds = { ram: fs.openSync(pair.base.ramFile, 'r'), disk: fs.openSync(pair.base.diskFile, 'r') };
    try {
      const ram = new ShadowPageTracker(pair.base.ramFile, pair.ram.length / PAGE);
      const disk = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      await decodeLaunchRound(r, (t, i, out) => { out.fill(0); fs.readSync(fds[t], out, 0, CHUNK_SIZE, i * CHUNK_SIZE); return out; }, {
        hold: (t, i, d) => (t === 'ram' ? ram.hold(i, d) : disk.hold(i, d)),
        held: (t, i, out) => (t === 'ram' ? ram.page(i, out) : disk.held(i, out)),
      }, compressor);
      const buf = Buffer.alloc(CHUNK_SIZE);
      for (let i = 0; i < pair.ram.length / PAGE; i++) assert.ok(ram.page(i, buf).equals(pair.ram.subarray(i * PAGE, (i + 1) * PAGE)), `source RAM page ${i}`);
      assert.equal(await ram.scanFile(pair.launch.ramFile, async () => undefined), 0, 'RAM compare after round 0');
      const seen: number[] = [];
      await disk.scan(async (i) => { seen.push(i); }, true);
      assert.deepEqual(seen, [], 'disk scan after round 0');
    } finally { fs.closeSync(baseDiskFd); fs.closeSync(fds.ram); fs.closeSync(fds.disk); }
  });

  describe('hostile units at the destination', () => {
    /** One RAM segment of raw pages at `indices`, its entry named by content (as in an xz round). */
    const segmentOf = (indices: number[], fill: number) => {
      const raw = encodeSegment(indices.map((index) => ({ encoding: Encoding.Raw, index, ref: 0, refTarget: 'ram' as Target })), indices.map((i) => Buffer.alloc(PAGE, (fill + i) & 0xff)));
      const runs: Array<[number, number]> = [];
      for (const i of indices) { const l = runs[runs.length - 1]; if (l && l[0] + l[1] === i) l[1]++; else runs.push([i, 1]); }
      const entry: SegmentEntry = { digest: sha(raw), rawDigest: sha(raw), kind: 'chunks', target: 'ram', size: raw.length, rawSize: raw.length, records: indices.length, chunks: runs };
      return { raw, entry };
    };
    const unitOf = (stored: Buffer, rawSize: number, segments = 1): CompressionUnit => ({ digest: segmentName(stored), size: stored.length, rawSize, segments });
    const body = (h: Omit<RoundHeader, 'round' | 'final'>, data: Buffer[]) => encodeRoundBody({ round: 0, final: false, ...h }, data);

    it('a well-formed unit of two segments lands; the same unit truncated is refused naming it', async () => {
      const s1 = segmentOf([3, 4, 5], 1), s2 = segmentOf([7], 2);
      const stored = await compressUnit(Buffer.concat([s1.raw, s2.raw]));
      const u = unitOf(stored, s1.raw.length + s2.raw.length, 2);
      const a = await applyAt('ok', body({ segments: [s1.entry, s2.entry], units: [u] }, [stored]));
      try {
        const ram = fs.readFileSync(a.ramFile);
        assert.ok(ram.subarray(4 * PAGE, 5 * PAGE).equals(Buffer.alloc(PAGE, 5)) && ram.subarray(7 * PAGE, 8 * PAGE).equals(Buffer.alloc(PAGE, 9)));
      } finally { a.close(); }
      // The body ends inside the unit (the header still says its full size).
      const cut = body({ segments: [s1.entry, s2.entry], units: [u] }, [stored]);
      await refused('truncated', cut.subarray(0, cut.length - 9), /body ended inside compression unit sha256:[0-9a-f]{64}/);
      // The unit itself shorter than its header says, the body ending with it: refused as well.
      await refused('short-unit', body({ segments: [s1.entry, s2.entry], units: [u] }, [stored.subarray(0, stored.length - 9)]), /ended inside compression unit|does not decompress|compression unit/);
    });

    it('a declared size that lies: more output than declared is cut off and refused; less is refused', async () => {
      const s = segmentOf([10, 11], 3);
      const more = await compressUnit(Buffer.concat([s.raw, Buffer.alloc(PAGE, 1)]));
      await refused('more', body({ segments: [s.entry], units: [unitOf(more, s.raw.length)] }, [more]), /decompresses to more than \d+ bytes \(its declared size\); refused/, ['Corrupt']);
      const less = await compressUnit(s.raw.subarray(0, s.raw.length - PAGE));
      await refused('less', body({ segments: [s.entry], units: [unitOf(less, s.raw.length)] }, [less]), /decompressed to \d+ bytes, its declared size is \d+; refused/, ['Corrupt']);
    });

    it('an xz bomb (32 MiB of zeros in a few KB, declared one segment) is cut off near its declared size, memory flat', async () => {
      const s = segmentOf([12], 4);
      const bomb = await compressUnit(Buffer.alloc(32 << 20));
      assert.ok(bomb.length < 16 << 10, `the bomb is ${bomb.length} bytes`);
      const before = process.memoryUsage().rss;
      let peak = 0;
      const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss - before); }, 5);
      try {
        await refused('bomb', body({ segments: [s.entry], units: [unitOf(bomb, s.raw.length)] }, [bomb]), /decompresses to more than \d+ bytes/, ['Corrupt']);
      } finally { clearInterval(t); }
      assert.ok(peak < 80 << 20, `resident memory grew by ${peak >> 20} MiB while refusing the bomb`);
    });

    it('a stream whose dictionary needs more than the decoder memory limit is refused', async () => {
      const s = segmentOf([13], 5);
      const patched = patchDictionary(await compressUnit(s.raw), 37);
      await refused('memlimit', body({ segments: [s.entry], units: [unitOf(patched, s.raw.length)] }, [patched]), new RegExp(`needs more than ${XZ_DECODER_MEMLIMIT} bytes of decoder memory`), ['Corrupt']);
    });

    it('a unit holding another segment\'s content (another chunk, or other bytes of the same size) is refused by the content name before it is applied', async () => {
      const listed = segmentOf([20], 6);
      const other = segmentOf([21], 6); // same layout, another chunk
      const stored = await compressUnit(other.raw);
      await refused('other-chunk', body({ segments: [listed.entry], units: [unitOf(stored, listed.raw.length)] }, [stored]), /segment sha256:[0-9a-f]{64} cut from compression unit sha256:[0-9a-f]{64} has content sha256:/, ['Corrupt']);
      const a = await RoundApplier.create(path.join(tmp, 'untouched'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
      try {
        const rs = await openRound(pieces(body({ segments: [listed.entry], units: [unitOf(stored, listed.raw.length)] }, [stored])), 0, { ...limits, chunks: a.chunkLimits });
        await assert.rejects(a.apply(rs.segments(), compressor), /has content/);
        assert.ok(fs.readFileSync(a.ramFile).equals(fs.readFileSync(pair.base.ramFile)), 'nothing written');
      } finally { a.close(); }
    });

    it('a unit whose bytes are not its name, or with bytes after its stream, is refused', async () => {
      const s = segmentOf([30], 7);
      const stored = await compressUnit(s.raw);
      const wrongName = { ...unitOf(stored, s.raw.length), digest: `sha256:${'b'.repeat(64)}` };
      await refused('name', body({ segments: [s.entry], units: [wrongName] }, [stored]), /is corrupt: its bytes hash to/, ['Corrupt']);
      const padded = Buffer.concat([stored, Buffer.alloc(8)]);
      await refused('padded', body({ segments: [s.entry], units: [unitOf(padded, s.raw.length)] }, [padded]), /bytes after its xz stream's end|does not decompress/, ['Corrupt']);
    });

    it('a unit whose bytes stop coming (a source gone quiet): a cancel ends its decode at once and gives the decoder\'s place back', async () => {
      const s = segmentOf([50], 10);
      const stored = await compressUnit(s.raw);
      const unit = unitOf(stored, s.raw.length);
      const stalled = [0, 1].map(() => {
        const ac = new AbortController();
        let first = true;
        // The first slice, then nothing ever again.
        const p = decodeUnitStream(unit, async (max) => { if (first) { first = false; return stored.subarray(0, Math.min(max, 16)); } return new Promise<Buffer>(() => undefined); }, () => undefined, ac.signal);
        p.catch(() => undefined);
        return { ac, p };
      });
      await new Promise((r) => setTimeout(r, 100));
      for (const x of stalled) x.ac.abort();
      for (const x of stalled) await assert.rejects(x.p, /cancelled/);
      // Both places free again (at most two units decode at once in a process): a third decode finishes.
      const parts: Buffer[] = [];
      let at = 0;
      await decodeUnitStream(unit, async (max) => { const b = stored.subarray(at, at + Math.min(max, 100)); at += b.length; return b; }, (b) => { parts.push(b); });
      assert.ok(Buffer.concat(parts).equals(s.raw));
    });

    it('a unit decodes as its bytes arrive: its first segment comes out before the unit\'s last bytes, no place held while they are awaited', async () => {
      const pages = Array.from({ length: 64 }, () => randomBytes(PAGE));
      const raw1 = encodeSegment(pages.map((_, i) => ({ encoding: Encoding.Raw, index: 100 + i, ref: 0, refTarget: 'ram' as Target })), pages);
      const e1: SegmentEntry = { digest: sha(raw1), rawDigest: sha(raw1), kind: 'chunks', target: 'ram', size: raw1.length, rawSize: raw1.length, records: 64, chunks: [[100, 64]] };
      // The second segment incompressible too: the unit's last 64 bytes are its tail and the stream's end, never the first's.
      const pages2 = Array.from({ length: 16 }, () => randomBytes(PAGE));
      const raw2 = encodeSegment(pages2.map((_, i) => ({ encoding: Encoding.Raw, index: 200 + i, ref: 0, refTarget: 'ram' as Target })), pages2);
      const s2 = { raw: raw2, entry: { digest: sha(raw2), rawDigest: sha(raw2), kind: 'chunks', target: 'ram', size: raw2.length, rawSize: raw2.length, records: 16, chunks: [[200, 16]] } as SegmentEntry };
      const stored = await compressUnit(Buffer.concat([raw1, s2.raw]));
      const unit = unitOf(stored, raw1.length + s2.raw.length, 2);
      // All but the unit's last 64 bytes come at once.
      const hold = stored.length - 64;
      let given = 0, release!: () => void;
      const rest = new Promise<void>((r) => { release = r; });
      const gen = unitSegments({
        readUpTo: async (max) => { if (given >= hold) await rest; const n = Math.min(max, (given < hold ? hold : stored.length) - given); given += n; return stored.subarray(given - n, given); },
        atEnd: async () => given >= stored.length,
      }, [unit], [e1, s2.entry], 'arriving round');
      const first = await Promise.race([gen.next(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no segment before the unit\'s last bytes came')), 10_000))]);
      assert.equal(first.value?.entry, e1);
      assert.ok(given <= hold, `before the unit's last bytes came (${given} of ${stored.length} given)`);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(decoderPlaces(), { decoding: 0, waiting: 0 }, 'no place held while the rest is awaited');
      release();
      assert.equal((await gen.next()).value?.entry, s2.entry);
      assert.equal((await gen.next()).done, true);
    });

    it('units whose bytes stop coming hold no decoder place: a synthesis\'s unit decodes while two rounds wait on quiet sources (review 11 HIGH-1)', async () => {
      const s = segmentOf([60], 11);
      const stored = await compressUnit(s.raw);
      const unit = unitOf(stored, s.raw.length);
      const quiet = [0, 1].map(() => {
        let first = true;
        // A few bytes of the unit, then nothing ever again (heartbeats keep such a session open).
        const gen = unitSegments({ readUpTo: async (max) => { if (first) { first = false; return stored.subarray(0, Math.min(max, 16)); } return new Promise<Buffer>(() => undefined); }, atEnd: async () => false }, [unit], [s.entry], 'quiet round');
        void gen.next().catch(() => undefined);
        return gen;
      });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(decoderPlaces(), { decoding: 0, waiting: 0 }, 'no place held while the bytes are awaited');
      const raw = await decompressUnit(unit, stored);
      assert.ok(raw.equals(s.raw));
      void quiet;
    });

    it('a caller waiting for a decoder place leaves the queue when its signal aborts (review 11 MEDIUM-1)', async () => {
      const s = segmentOf([61], 12);
      const stored = await compressUnit(s.raw);
      const unit = unitOf(stored, s.raw.length);
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      // Two decodes hold both places until released (their output is not taken).
      const holders = [0, 1].map(() => { let at = 0; return decodeUnitStream(unit, async (max) => { const b = stored.subarray(at, at + max); at += b.length; return b; }, () => gate); });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(decoderPlaces().decoding, 2);
      const ac = new AbortController();
      const waiter = decompressUnit(unit, stored, ac.signal);
      waiter.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(decoderPlaces().waiting, 1);
      ac.abort();
      await assert.rejects(waiter, (e: unknown) => isCloudletError(e) && e.code === 'Cancelled' && /waiting for a decoder/.test(e.message));
      assert.equal(decoderPlaces().waiting, 0, 'the aborted caller left the queue');
      release();
      await Promise.all(holders);
      assert.deepEqual(decoderPlaces(), { decoding: 0, waiting: 0 });
    });

    it('the source\'s own decode (every unit at once, bufferedUnitSegments) has the same bounds: a bomb and another segment\'s content are refused; good units come out in order', async () => {
      const drain = async (data: Buffer[], units: CompressionUnit[], entries: SegmentEntry[]) => {
        const out: Buffer[] = [];
        for await (const x of bufferedUnitSegments(data, units, entries, 'round 0 (launch overlay)')) out.push(x.data);
        return out;
      };
      const s1 = segmentOf([60, 61], 11), s2 = segmentOf([62], 12), s3 = segmentOf([70], 13);
      const u1 = await compressUnit(Buffer.concat([s1.raw, s2.raw])), u2 = await compressUnit(s3.raw);
      const got = await drain([u1, u2], [unitOf(u1, s1.raw.length + s2.raw.length, 2), unitOf(u2, s3.raw.length)], [s1.entry, s2.entry, s3.entry]);
      assert.deepEqual(got.map((b) => sha(b)), [s1.entry.rawDigest, s2.entry.rawDigest, s3.entry.rawDigest]);
      const bomb = await compressUnit(Buffer.alloc(8 << 20));
      await assert.rejects(drain([u1, bomb], [unitOf(u1, s1.raw.length + s2.raw.length, 2), unitOf(bomb, s3.raw.length)], [s1.entry, s2.entry, s3.entry]), /decompresses to more than \d+ bytes/);
      await assert.rejects(drain([u2], [unitOf(u2, s3.raw.length)], [{ ...s3.entry, rawDigest: s1.entry.rawDigest, digest: s1.entry.rawDigest! }]), /has content sha256:/);
    });

    it('headers: units that do not cover the segments, mix images, lie about their segments\' sizes, or come in the final round are refused before a byte is read', async () => {
      const s = segmentOf([40], 8);
      const stored = await compressUnit(s.raw);
      const u = unitOf(stored, s.raw.length);
      const diskEntry: SegmentEntry = { ...segmentOf([41], 9).entry, target: 'disk' };
      await refused('cover', body({ segments: [s.entry, diskEntry], units: [u] }, [stored]), /compression units hold 1 of 2 segments/, ['BadInput']);
      await refused('mix', body({ segments: [s.entry, diskEntry], units: [{ ...u, segments: 2, rawSize: s.raw.length + diskEntry.rawSize }] }, [stored]), /mixes images/, ['BadInput']);
      await refused('raw', body({ segments: [s.entry], units: [{ ...u, rawSize: u.rawSize + 1 }] }, [stored]), /declares \d+ decompressed bytes, its segments make/, ['BadInput']);
      await refused('named', body({ segments: [{ ...s.entry, digest: `sha256:${'c'.repeat(64)}` }], units: [u] }, [stored]), /must have digest = rawDigest/, ['BadInput']);
      const fin = encodeRoundBody({ round: 0, final: true, segments: [s.entry, { digest: `sha256:${'d'.repeat(64)}`, kind: 'device-state', size: 1, rawSize: 1 }], units: [u] }, [stored]);
      await refused('final', fin, /final round does not carry compression units/, ['BadInput']);
      assert.ok(UNIT_QUEUE_BYTES >= LIMITS.segmentRawBytes, 'a whole segment always fits the queue');
    });
  });
});
