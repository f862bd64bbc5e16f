/**
 * Round 0 from the VM's launch overlay (sandbox/handoff/launchRound.ts), on generated images with
 * every encoding (zero, base RAM/disk copies, raw, XOR, copies of chunks of the overlay): the
 * destination's applier lands the launch images byte for byte, the source's decode holds exactly
 * the same (so the next compare round finds nothing), and overlays that cannot be round 0 are
 * named, not sent; a copy of a chunk the round does not store is refused on both sides.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../../sandbox/common/errors';
import { CHUNK_SIZE, encodeSegment, Encoding, type SegmentEntry, type Target } from '../../sandbox/overlay/format';
import { OverlayReader } from '../../sandbox/overlay/overlayReader';
import { Qcow2Reader } from '../../sandbox/overlay/qcow2Reader';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import { DirtyPageTracker, PageBytesNotKept, ShadowPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { LayerTracker } from '../../sandbox/handoff/layerTracker';
import { decodeLaunchRound, readLaunchRound, type LaunchRound } from '../../sandbox/handoff/launchRound';
import { encodeRoundBody } from '../../sandbox/handoff/protocol';
import { RoundApplier } from '../../sandbox/handoff/roundApplier';
import { openRound } from '../../sandbox/handoff/roundReader';
import { PAGE, type GeneratedPair } from './helpers/generatedImages';
import { makeLaunchOverlay } from './helpers/launchOverlay';
import { assertLayerIsLaunchDisk, pieces } from './helpers/handoffRounds';

describe('handoff round 0 from the launch overlay', function () {
  this.timeout(60_000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let overlayFile: string;
  let overlayId: string;
  let sizes: Record<Target, number>;

  before(async () => {
    ({ tmp, pair, compressor, overlayFile, overlayId, sizes } = await makeLaunchOverlay('launch-round-'));
  });
  after(async () => {
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const baseReader = () => {
    const fds = { ram: fs.openSync(pair.base.ramFile, 'r'), disk: fs.openSync(pair.base.diskFile, 'r') };
    return {
      read: (t: Target, i: number, out: Buffer) => { out.fill(0); fs.readSync(fds[t], out, 0, CHUNK_SIZE, i * CHUNK_SIZE); return out; },
      close: () => { fs.closeSync(fds.ram); fs.closeSync(fds.disk); },
    };
  };
  /** The source's side: a shadow of the base RAM and a layer tracker, the round decoded into both. */
  const decodeAtSource = async (r: LaunchRound, layerFile: string, baseDiskFd: number) => {
    const ram = new ShadowPageTracker(pair.base.ramFile, pair.ram.length / PAGE);
    const disk = new LayerTracker(layerFile, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
    const base = baseReader();
    try {
      await decodeLaunchRound(r, base.read, {
        hold: (t, i, d) => (t === 'ram' ? ram.hold(i, d) : disk.hold(i, d)),
        held: (t, i, out) => (t === 'ram' ? ram.page(i, out) : disk.held(i, out)),
      }, compressor);
    } finally { base.close(); }
    return { ram, disk };
  };

  it('the in-round first write of the layer waits while the destination QEMU is not yet started (done at the round\'s end)', async () => {
    const r = await readLaunchRound(overlayFile, overlayId, pair.baseId, sizes);
    assert.ok(!('unusable' in r));
    const a = await RoundApplier.create(path.join(tmp, 'dest-wait'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      const body = encodeRoundBody({ round: 0, final: false, segments: r.segments }, r.data);
      const rs = await openRound(pieces(body, 7000), 0, { chunks: a.chunkLimits, maxBytes: pair.ram.length + (256 << 20) });
      const diskSegments = rs.header.segments.filter((e) => e.target === 'disk').length;
      let asked = 0;
      const applied = await a.apply(rs.segments(), compressor, 0, { diskSegments, firstSyncAllowed: () => { asked++; return false; } });
      assert.equal(asked, 1, 'asked once, at the last disk segment');
      assert.equal(applied.syncDiskInRoundMs, undefined, 'no in-round write');
      assert.equal(a.layerWritten, false, 'the layer untouched');
      assert.equal(a.syncDiskLayer().mode, 'rebuilt');
      assertLayerIsLaunchDisk(a.diskLayer, pair);
    } finally { a.close(); }
  });

  it('the destination applies the stored segments and holds the launch images; the source decoded the same, so the next compare finds nothing', async () => {
    const r = await readLaunchRound(overlayFile, overlayId, pair.baseId, sizes);
    assert.ok(!('unusable' in r), `usable: ${JSON.stringify((r as { unusable?: string }).unusable)}`);
    assert.ok(r.chunks.ram > 0 && r.chunks.disk > 0, JSON.stringify(r.chunks));
    assert.ok(r.segments.every((s) => s.kind === 'chunks'), 'no device state in round 0');
    // The bytes sent are the overlay file's own segment bytes.
    const file = fs.readFileSync(overlayFile);
    for (const d of r.data) assert.ok(file.includes(d), 'a segment as stored');

    // Destination: the round as any other (header checks, segment digests, records), byte for byte the launch.
    const a = await RoundApplier.create(path.join(tmp, 'dest'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      const body = encodeRoundBody({ round: 0, final: false, segments: r.segments }, r.data);
      const rs = await openRound(pieces(body, 7000), 0, { chunks: a.chunkLimits, maxBytes: pair.ram.length + (256 << 20) });
      // The layer is written once the round's last disk segment is applied (the rest still arriving), then patched.
      const diskSegments = rs.header.segments.filter((e) => e.target === 'disk').length;
      assert.ok(diskSegments > 0);
      const applied = await a.apply(rs.segments(), compressor, 0, { diskSegments });
      assert.equal(typeof applied.syncDiskInRoundMs, 'number', 'the layer written inside the round');
      assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), 'destination RAM = launch RAM');
      a.syncDiskLayer();
      const layer = Qcow2Reader.open(a.diskLayer);
      const fd = fs.openSync(pair.base.diskFile, 'r');
      try {
        const buf = Buffer.alloc(CHUNK_SIZE);
        for (let i = 0; i < pair.disk.length / PAGE; i++) {
          layer.readChunk(i, buf, fd);
          assert.ok(buf.equals(pair.disk.subarray(i * PAGE, (i + 1) * PAGE)), `destination disk chunk ${i}`);
        }
      } finally { layer.close(); fs.closeSync(fd); }
    } finally { a.close(); }

    // Source: what it records as held is the launch, page for page and chunk for chunk.
    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    try {
      const { ram, disk } = await decodeAtSource(r, pair.launch.diskLayer, baseDiskFd);
      const buf = Buffer.alloc(CHUNK_SIZE);
      for (let i = 0; i < pair.ram.length / PAGE; i++) assert.ok(ram.page(i, buf).equals(pair.ram.subarray(i * PAGE, (i + 1) * PAGE)), `source RAM page ${i}`);
      for (let i = 0; i < pair.disk.length / PAGE; i++) assert.ok(disk.held(i, buf).equals(pair.disk.subarray(i * PAGE, (i + 1) * PAGE)), `source disk chunk ${i}`);
      // The next round (the usual compare of the running VM, here still at its launch state) is empty.
      assert.equal(await ram.scanFile(pair.launch.ramFile, async () => undefined), 0, 'RAM compare after round 0');
      const seen: number[] = [];
      await disk.scan(async (i) => { seen.push(i); }, true);
      // Only the chunks the layer rewrote with the base's own bytes could differ from the overlay's view: none.
      assert.deepEqual(seen, [], 'disk scan after round 0');
    } finally { fs.closeSync(baseDiskFd); }
  });

  it('decoded into a digest copy (DirtyPageTracker: one SHA-256 per page, copies and base pages by digest), the next compare finds nothing; a page changed since is found', async () => {
    const r = await readLaunchRound(overlayFile, overlayId, pair.baseId, sizes);
    assert.ok(!('unusable' in r));
    const pages = pair.ram.length / PAGE;
    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    const base = baseReader();
    try {
      const ram = new DirtyPageTracker(fs.readFileSync(pair.base.ramDigests), pages);
      const disk = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      let copies = 0, bases = 0;
      const digests = { ram: fs.readFileSync(pair.base.ramDigests), disk: fs.readFileSync(pair.base.diskDigests) };
      await decodeLaunchRound(r, base.read, {
        hold: (t, i, d) => (t === 'ram' ? ram.hold(i, d) : disk.hold(i, d)),
        held: (t, i, out) => (t === 'ram' ? ram.page(i, out) : disk.held(i, out)),
        holdCopy: (t, i, rt, ref) => { if (t !== 'ram' || rt !== 'ram') return false; ram.holdCopy(i, ref); copies++; return true; },
        holdBase: (t, i, rt, ref) => { if (t !== 'ram') return false; bases++; ram.holdDigest(i, digests[rt].subarray(ref * 32, ref * 32 + 32)); return true; },
      }, compressor);
      assert.ok(copies > 0 && bases > 0, `the generated overlay copies RAM pages and base chunks (${copies}, ${bases}): recorded by digest`);
      assert.equal(await ram.scanFile(pair.launch.ramFile, async () => undefined), 0, 'RAM compare after round 0');
      for (let i = 0; i < pages; i++) {
        const page = pair.ram.subarray(i * PAGE, (i + 1) * PAGE);
        assert.ok(!ram.differs(i, page), `page ${i}`);
        assert.equal(ram.zero(i), page.equals(Buffer.alloc(PAGE)), `zero ${i}`);
      }
      const changed = Buffer.from(pair.ram.subarray(0, PAGE));
      changed[100] ^= 1;
      assert.ok(ram.differs(0, changed) && ram.check(0, changed) && !ram.differs(0, changed), 'a changed page differs until recorded');
      assert.throws(() => ram.page(0, Buffer.alloc(PAGE)), PageBytesNotKept);
    } finally { base.close(); fs.closeSync(baseDiskFd); }
  });

  it('an overlay that cannot be round 0 is named and nothing is read on: none kept, another base, other sizes, a damaged segment', async () => {
    const why = async (file: string, baseId = pair.baseId, s = sizes, madeFrom: string | undefined = overlayId) => {
      const r = await readLaunchRound(file, madeFrom, baseId, s);
      assert.ok('unusable' in r, 'unusable');
      return r.unusable;
    };
    assert.match(await why(path.join(tmp, 'none.overlay')), /not made by synthesis/);
    assert.match(await why(overlayFile, pair.baseId, sizes, ''), /not recorded/);
    assert.match(await why(overlayFile, pair.baseId, sizes, 'ab'.repeat(32)), /now overlay .*not the abababababab the VM was made from/);
    assert.match(await why(overlayFile, 'cd'.repeat(32)), /for base .* the VM runs cdcdcdcdcdcd/);
    assert.match(await why(overlayFile, pair.baseId, { ram: sizes.ram * 2, disk: sizes.disk }), /images .* are not the VM's/);
    const bad = path.join(tmp, 'damaged.overlay');
    const b = fs.readFileSync(overlayFile);
    const reader = OverlayReader.open(overlayFile);
    const firstChunks = reader.manifest.segments.find((x) => x.kind === 'chunks')!;
    const first = reader.segmentRange(firstChunks.digest);
    reader.close();
    b[first.offset + 20] ^= 0xff; // inside a chunk segment
    fs.writeFileSync(bad, b);
    assert.match(await why(bad), /is corrupt: its bytes hash to/);
    fs.writeFileSync(bad, Buffer.from('CLDOVRLY not an overlay'));
    assert.match(await why(bad), /does not open/);
  });

  it('a disk chunk of round 0 copying a RAM page, decoded into a digest copy: PageBytesNotKept (the sender decodes again into a byte copy)', async () => {
    const rawRam = encodeSegment([{ encoding: Encoding.Raw, index: 5, ref: 0, refTarget: 'ram' }], [Buffer.alloc(PAGE, 7)]);
    const rawDisk = encodeSegment([{ encoding: Encoding.Self, index: 2, ref: 5, refTarget: 'ram' }], []);
    const cr = await compressor.compress(rawRam, 3), cd = await compressor.compress(rawDisk, 3);
    const segments: SegmentEntry[] = [
      { digest: cr.digest, kind: 'chunks', target: 'ram', size: cr.data.length, rawSize: rawRam.length, rawDigest: cr.rawDigest, records: 1, chunks: [[5, 1]] },
      { digest: cd.digest, kind: 'chunks', target: 'disk', size: cd.data.length, rawSize: rawDisk.length, rawDigest: cd.rawDigest, records: 1, chunks: [[2, 1]] },
    ];
    const round: LaunchRound = { overlayId: 'x', segments, data: [cr.data, cd.data], chunks: { ram: 1, disk: 1 } };
    const ram = new DirtyPageTracker(fs.readFileSync(pair.base.ramDigests), pair.ram.length / PAGE);
    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    const base = baseReader();
    try {
      const disk = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      await assert.rejects(decodeLaunchRound(round, base.read, {
        hold: (t, i, d) => (t === 'ram' ? ram.hold(i, d) : disk.hold(i, d)),
        held: (t, i, out) => (t === 'ram' ? ram.page(i, out) : disk.held(i, out)),
      }, compressor), PageBytesNotKept);
      // The byte copy takes the same round.
      const { disk: d2 } = await decodeAtSource(round, pair.launch.diskLayer, baseDiskFd);
      assert.ok(d2.held(2, Buffer.alloc(PAGE)).equals(Buffer.alloc(PAGE, 7)));
    } finally { base.close(); fs.closeSync(baseDiskFd); }
  });

  it('a copy of a chunk the round does not store: refused by the source\'s decode and by the destination (Corrupt)', async () => {
    const raw = encodeSegment([{ encoding: Encoding.Self, index: 3, ref: 5, refTarget: 'ram' }], []);
    const c = await compressor.compress(raw, 3);
    const entry: SegmentEntry = { digest: c.digest, kind: 'chunks', target: 'ram', size: c.data.length, rawSize: raw.length, rawDigest: c.rawDigest, records: 1, chunks: [[3, 1]] };
    const round: LaunchRound = { overlayId: 'x', segments: [entry], data: [c.data], chunks: { ram: 1, disk: 0 } };
    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    try {
      await assert.rejects(decodeAtSource(round, pair.launch.diskLayer, baseDiskFd), (e: unknown) => e instanceof CloudletError && e.code === 'Corrupt' && /copies ram chunk 5, which this round does not carry/.test(e.message));
    } finally { fs.closeSync(baseDiskFd); }
    const a = await RoundApplier.create(path.join(tmp, 'dest-bad'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      const rs = await openRound(pieces(encodeRoundBody({ round: 0, final: false, segments: [entry] }, [c.data])), 0, { chunks: a.chunkLimits, maxBytes: 1 << 30 });
      // The same decoding on both sides (chunkRecords.ts): the same refusal.
      await assert.rejects(a.apply(rs.segments(), compressor), (e: unknown) => e instanceof CloudletError && e.code === 'Corrupt' && /copies ram chunk 5, which this round does not carry/.test(e.message));
    } finally { a.close(); }
  });
});
