/**
 * Issue 13, wire profile: re-compression into xz compression units (container version 2) keeps the
 * overlay ID (it names the content), is deterministic, still synthesizes the launch images byte for
 * byte, and every bound of the unit decoder holds (truncated, tampered, oversized units, a
 * dictionary past the decoder's memory limit, more output than declared, unknown container versions).
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compress } from 'zstd-napi';
import { isCloudletError } from '../../sandbox/common/errors';
import { applyOverlay, canonicalJson, createOverlay, overlayInfo, OverlayReader, SegmentCompressor, verifyOverlay, type OverlayManifest } from '../../sandbox/overlay';
import { compressedBytesOf, CONTAINER_HEADER_SIZE, contentView, encodeContainerHeader, LIMITS, overlayIdOf, segmentName, validateManifest, XZ_DECODER_MEMLIMIT } from '../../sandbox/overlay/format';
import { BUILD_LEVEL, hasProfile, parseProfile, PROFILES, recompressOverlay } from '../../sandbox/overlay/recompress';
import { compressUnit, decompressUnit, planUnits } from '../../sandbox/overlay/xzUnits';
import { makePair, type GeneratedPair } from './helpers/generatedImages';
import { patchDictionary } from './helpers/xzStreams';

describe('overlay wire profile and content IDs (issue 13)', function () {
  this.timeout(120_000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let built: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-wire-'));
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
    built = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outFile: path.join(tmp, 'build.overlay'), compressor, level: BUILD_LEVEL })).path;
  });
  after(async () => { await compressor.close(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('profiles: build is zstd 3, wire xz 9 units; anything else refused', () => {
    assert.deepEqual(PROFILES, { build: { algorithm: 'zstd', level: 3 }, wire: { algorithm: 'xz', level: 9 } });
    assert.equal(parseProfile('wire'), 'wire');
    assert.throws(() => parseProfile('fast'), /not one of build, wire/);
  });

  it('re-compressing for the wire keeps the overlay ID, stores xz units in a version-2 container, is deterministic, synthesizes the same launch byte for byte, and converts back to the build file exactly', async () => {
    const b = OverlayReader.open(built);
    const wire = await recompressOverlay(built, path.join(tmp, 'wire.overlay'), { codec: PROFILES.wire, compressor });
    const w = OverlayReader.open(wire.path);
    try {
      assert.equal(wire.overlayId, b.overlayId);
      assert.equal(w.overlayId, b.overlayId);
      assert.ok(hasProfile(w.manifest, 'wire') && !hasProfile(b.manifest, 'wire'));
      assert.equal(fs.readFileSync(wire.path).readUInt32BE(8), 2, 'container version 2');
      const comp = w.manifest.compression;
      assert.equal(comp.algorithm, 'xz');
      if (comp.algorithm !== 'xz') return;
      // One unit per image here (each under 64 MiB) plus the device state.
      assert.equal(comp.units.length, 3);
      assert.deepEqual(w.segmentRanges().map((r) => r.digest), comp.units.map((u) => u.digest));
      assert.deepEqual(w.manifest.segments.map((s) => s.rawDigest), b.manifest.segments.map((s) => s.rawDigest));
      assert.ok(w.manifest.segments.every((s) => s.digest === s.rawDigest && s.size === s.rawSize));
      const verified = await verifyOverlay(w, w, { baseId: pair.baseId, compressor });
      assert.equal(verified.segments, w.manifest.segments.length);
      assert.equal(verified.compressedBytes, wire.bytes - CONTAINER_HEADER_SIZE - w.manifestBytes.length, 'verify counts the stored units');
      const info = overlayInfo(w.manifest, { overlayId: w.overlayId, fileBytes: wire.bytes });
      assert.deepEqual(info.compression, { algorithm: 'xz', level: 9 });
      assert.equal(info.total.compressedBytes, comp.units.reduce((n, u) => n + u.size, 0), 'info: RAM, disk and device-state units');
      const again = await recompressOverlay(built, path.join(tmp, 'wire2.overlay'), { codec: PROFILES.wire, compressor });
      assert.ok(fs.readFileSync(again.path).equals(fs.readFileSync(wire.path)), 'the same overlay gives the same wire file');
      const res = await applyOverlay(w, w, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'launch-wire'), compressor });
      const ref = await applyOverlay(b, b, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'launch-build'), compressor });
      assert.ok(fs.readFileSync(res.ramFile).equals(fs.readFileSync(pair.launch.ramFile)));
      assert.ok(fs.readFileSync(res.diskLayer).equals(fs.readFileSync(ref.diskLayer)), 'same launch disk layer');
      assert.ok(fs.readFileSync(res.deviceState).equals(fs.readFileSync(ref.deviceState)));
      const back = await recompressOverlay(wire.path, path.join(tmp, 'back.overlay'), { codec: PROFILES.build, compressor });
      assert.ok(fs.readFileSync(back.path).equals(fs.readFileSync(built)), 'wire -> build gives the build file');
    } finally { b.close(); w.close(); }
  });

  it('the ID hashes the content view (no compression fields); a manifest without content names keeps the old ID', () => {
    const r = OverlayReader.open(built);
    try {
      const view = contentView(r.manifest);
      assert.equal(view.compression, undefined);
      assert.ok((view.segments as Array<Record<string, unknown>>).every((s) => s.digest === undefined && s.size === undefined && typeof s.rawDigest === 'string'));
      assert.equal(r.overlayId, createHash('sha256').update(`cloudlet-overlay-content/1\n${canonicalJson(view)}`).digest('hex'));
      const legacy = structuredClone(r.manifest);
      for (const s of legacy.segments) delete s.rawDigest;
      const bytes = Buffer.from(canonicalJson(legacy));
      assert.equal(overlayIdOf(legacy, bytes), createHash('sha256').update(bytes).digest('hex'));
    } finally { r.close(); }
  });

  it('a segment replaced by other content under its own (matching) compressed name is refused: the content name is checked', async () => {
    const r = OverlayReader.open(built);
    const m = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
    const file = fs.readFileSync(built);
    const ranges = r.segmentRanges();
    r.close();
    // The device state segment swapped for other bytes of the same length; digest and size updated, rawDigest kept (ID unchanged).
    const k = m.segments.findIndex((s) => s.kind === 'device-state');
    const forged = Buffer.from(compress(Buffer.alloc(m.segments[k].rawSize, 7)));
    const segs = ranges.map((x) => file.subarray(x.offset, x.offset + x.length));
    segs[k] = forged;
    m.segments[k] = { ...m.segments[k], digest: segmentName(forged), size: forged.length };
    const mb = Buffer.from(canonicalJson(m));
    const out = path.join(tmp, 'forged.overlay');
    fs.writeFileSync(out, Buffer.concat([encodeContainerHeader(mb), mb, ...segs]));
    const f = OverlayReader.open(out);
    try {
      assert.equal(f.overlayId, OverlayReader.open(built).overlayId, 'same ID: only the content name can catch it');
      await assert.rejects(verifyOverlay(f, f, { compressor }), (e: unknown) => {
        assert.ok(isCloudletError(e, 'Corrupt'), String(e));
        assert.match(e.message, /decompresses to content sha256:[0-9a-f]{64}, the manifest says sha256:/);
        return true;
      });
    } finally { f.close(); }
  });

  describe('compression units: the bounded decoder', () => {
    let wireFile: string;
    let m: OverlayManifest;
    let blobs: Buffer[];
    before(async () => {
      wireFile = (await recompressOverlay(built, path.join(tmp, 'bounds.overlay'), { codec: PROFILES.wire, compressor })).path;
      const r = OverlayReader.open(wireFile);
      m = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
      const file = fs.readFileSync(wireFile);
      blobs = r.segmentRanges().map((x) => file.subarray(x.offset, x.offset + x.length));
      r.close();
    });
    const units = () => { if (m.compression.algorithm !== 'xz') throw new Error('not xz'); return m.compression.units; };
    /** Writes a container with `mutate` applied to a copy of the manifest and the unit blobs; returns the verify outcome. */
    async function verifyForged(name: string, mutate: (mm: OverlayManifest, bb: Buffer[]) => void, version = 2): Promise<unknown> {
      const mm = structuredClone(m);
      const bb = blobs.map((x) => Buffer.from(x));
      mutate(mm, bb);
      const mb = Buffer.from(canonicalJson(mm));
      const out = path.join(tmp, `${name}.overlay`);
      fs.writeFileSync(out, Buffer.concat([encodeContainerHeader(mb, version), mb, ...bb]));
      try {
        const f = OverlayReader.open(out);
        try { await verifyOverlay(f, f, { compressor }); } finally { f.close(); }
      } catch (e) { return e; }
      return undefined;
    }
    const rename = (mm: OverlayManifest, bb: Buffer[], k: number) => {
      if (mm.compression.algorithm === 'xz') mm.compression.units[k] = { ...mm.compression.units[k], digest: segmentName(bb[k]), size: bb[k].length };
      for (const t of ['ram', 'disk'] as const) mm.breakdown[t].compressedBytes = compressedBytesOf(mm, t);
    };

    it('plans units per image, at most 128 MiB each, the device state alone', () => {
      assert.equal(LIMITS.unitRawBytes, 128 << 20);
      const seg = (kind: 'chunks' | 'device-state', target: 'ram' | 'disk' | undefined, rawSize: number) => ({ digest: 'sha256:x', kind, target, size: 1, rawSize });
      const plan = planUnits([seg('chunks', 'disk', 60 << 20), seg('chunks', 'disk', 60 << 20), seg('chunks', 'disk', 10 << 20), seg('chunks', 'ram', 1 << 20), seg('device-state', undefined, 5)]);
      assert.deepEqual(plan, [{ first: 0, count: 2, rawSize: 120 << 20 }, { first: 2, count: 1, rawSize: 10 << 20 }, { first: 3, count: 1, rawSize: 1 << 20 }, { first: 4, count: 1, rawSize: 5 }]);
    });

    it('a truncated unit is refused, naming the unit', async () => {
      const e = await verifyForged('truncated-unit', (mm, bb) => { bb[0] = bb[0].subarray(0, bb[0].length - 7); rename(mm, bb, 0); });
      assert.ok(isCloudletError(e, 'Corrupt'), String(e));
      assert.match(e.message, /compression unit sha256:[0-9a-f]{64} does not decompress/);
    });

    it('a unit whose bytes do not match its name is refused before decoding', async () => {
      const e = await verifyForged('tampered-unit', (_mm, bb) => { bb[1][Math.floor(bb[1].length / 2)] ^= 0x55; });
      assert.ok(isCloudletError(e, 'Corrupt'), String(e));
      assert.match(e.message, /is corrupt: its bytes hash to/);
    });

    it('a unit that decodes to other content (renamed, rawDigest kept) is refused by the segment content names', async () => {
      const other = await compressUnit(Buffer.alloc(units()[2].rawSize, 9));
      const e = await verifyForged('other-content', (mm, bb) => { bb[2] = other; rename(mm, bb, 2); });
      assert.ok(isCloudletError(e, 'Corrupt'), String(e));
      assert.match(e.message, /cut from compression unit .* has content sha256:[0-9a-f]{64}; refused/);
    });

    it('a unit that decodes to more than it declares is refused without holding the rest', async () => {
      const u = units()[2];
      const big = await compressUnit(Buffer.alloc(u.rawSize + (1 << 20), 3));
      await assert.rejects(decompressUnit({ ...u, digest: segmentName(big), size: big.length }, big), /decompresses to more than \d+ bytes; refused/);
    });

    it('a decompression bomb (128 MiB of zeros in a few KB, declared 1 MiB) is cut off near the cap, not decoded whole into memory', async () => {
      const bomb = await compressUnit(Buffer.alloc(LIMITS.unitRawBytes));
      assert.ok(bomb.length < 64 << 10, `the bomb is ${bomb.length} bytes`);
      const unit = { digest: segmentName(bomb), size: bomb.length, rawSize: 1 << 20, segments: 1 };
      global.gc?.();
      const before = process.memoryUsage();
      let peak = 0;
      const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss - before.rss); }, 1);
      try {
        await assert.rejects(decompressUnit(unit, bomb), /decompresses to more than 1048576 bytes; refused/);
      } finally { clearInterval(timer); }
      peak = Math.max(peak, process.memoryUsage().rss - before.rss);
      // Whole, it is 128 MiB in liblzma's queue plus 128 MiB of JS copies; sliced input stops within ~28 MiB of the cap.
      assert.ok(peak < 80 << 20, `resident memory grew by ${peak >> 20} MiB while refusing the bomb`);
    });

    it('exactly one xz stream: a second stream or padding after the first is refused', async () => {
      const a = await compressUnit(Buffer.alloc(1000, 7));
      const b = await compressUnit(Buffer.alloc(1000, 8));
      for (const [name, stored] of [['two streams', Buffer.concat([a, b])], ['zero padding', Buffer.concat([a, Buffer.alloc(4)])], ['garbage', Buffer.concat([a, Buffer.from('junk')])]] as const) {
        const e = await decompressUnit({ digest: segmentName(stored), size: stored.length, rawSize: 1000, segments: 1 }, stored).catch((x: unknown) => x);
        assert.ok(isCloudletError(e, 'Corrupt'), `${name}: ${String(e)}`);
      }
      assert.deepEqual(await decompressUnit({ digest: segmentName(a), size: a.length, rawSize: 1000, segments: 1 }, a), Buffer.alloc(1000, 7));
    });

    it('many units decoding at once (more than the process allows together) all finish, each with its own bytes; a cancel stops one', async () => {
      const stored = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => compressUnit(Buffer.alloc(200_000 + i, i + 1))));
      const got = await Promise.all(stored.map((b, i) => decompressUnit({ digest: segmentName(b), size: b.length, rawSize: 200_000 + i, segments: 1 }, b)));
      got.forEach((g, i) => assert.ok(g.equals(Buffer.alloc(200_000 + i, i + 1)), `unit ${i}`));
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(decompressUnit({ digest: segmentName(stored[0]), size: stored[0].length, rawSize: 200_000, segments: 1 }, stored[0], ac.signal),
        (e: unknown) => isCloudletError(e, 'Cancelled'));
    });

    it('oversized units are refused from the manifest, before any byte is read', () => {
      const mm = structuredClone(m);
      if (mm.compression.algorithm !== 'xz') throw new Error('not xz');
      mm.compression.units[0].rawSize = LIMITS.unitRawBytes + 1;
      assert.throws(() => validateManifest(mm), /compression\.units\[0\]\.rawSize 134217729 is over the limit of 134217728/);
      const mm2 = structuredClone(m);
      if (mm2.compression.algorithm !== 'xz') throw new Error('not xz');
      mm2.compression.units[0].segments += 1;
      assert.throws(() => validateManifest(mm2), /compression unit|segments/);
    });

    it('a stream whose dictionary needs more than the decoder memory limit is refused (LZMA2 dictionary field patched to 1.5 GiB)', async () => {
      const small = await compressUnit(Buffer.alloc(1 << 16, 1));
      const patched = patchDictionary(small, 37); // dictionary code 37 = 1.5 GiB
      const e = await decompressUnit({ digest: segmentName(patched), size: patched.length, rawSize: 1 << 16, segments: 1 }, patched).catch((x: unknown) => x);
      assert.ok(isCloudletError(e, 'Corrupt'), String(e));
      assert.match(e.message, new RegExp(`needs more than ${XZ_DECODER_MEMLIMIT} bytes of decoder memory`));
    });

    it('container versions: 2 needs an xz manifest and 1 a zstd one; any other version is refused', async () => {
      const e1 = await verifyForged('v1-with-units', () => undefined, 1);
      assert.ok(isCloudletError(e1, 'Corrupt'), String(e1));
      assert.match(e1.message, /container version 1 does not match its xz manifest/);
      const e3 = await verifyForged('v3', () => undefined, 3);
      assert.ok(isCloudletError(e3, 'BadInput'), String(e3));
      assert.match(e3.message, /container version 3 is not supported/);
      const head = fs.readFileSync(built).subarray(0, CONTAINER_HEADER_SIZE);
      assert.equal(head.readUInt32BE(8), 1, 'build overlays stay version 1');
    });
  });
});
