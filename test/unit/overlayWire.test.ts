/**
 * Issue 13, wire profile: re-compression keeps the overlay ID (it names the content), gives exactly
 * the file `create` writes at that level, still synthesizes the launch images, and the content
 * names are checked (a segment swapped for other content under a matching compressed name is refused).
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compress } from 'zstd-napi';
import { isCloudletError } from '../../sandbox/common/errors';
import { applyOverlay, canonicalJson, createOverlay, OverlayReader, SegmentCompressor, verifyOverlay, type OverlayManifest } from '../../sandbox/overlay';
import { contentView, encodeContainerHeader, overlayIdOf, segmentName } from '../../sandbox/overlay/format';
import { parseProfile, PROFILE_LEVELS, recompressOverlay } from '../../sandbox/overlay/recompress';
import { makePair, type GeneratedPair } from './helpers/generatedImages';

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
    built = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outFile: path.join(tmp, 'build.overlay'), compressor, level: PROFILE_LEVELS.build })).path;
  });
  after(async () => { await compressor.close(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('profiles: build is zstd 3, wire zstd 19; anything else refused', () => {
    assert.deepEqual(PROFILE_LEVELS, { build: 3, wire: 19 });
    assert.equal(parseProfile('wire'), 'wire');
    assert.throws(() => parseProfile('fast'), /not one of build, wire/);
  });

  it('re-compressing for the wire keeps the overlay ID, changes segment names, equals create at level 19 byte for byte', async () => {
    const b = OverlayReader.open(built);
    const wire = await recompressOverlay(built, path.join(tmp, 'wire.overlay'), { level: PROFILE_LEVELS.wire, compressor });
    const w = OverlayReader.open(wire.path);
    try {
      assert.equal(wire.overlayId, b.overlayId);
      assert.equal(w.overlayId, b.overlayId);
      assert.equal(w.manifest.compression.level, 19);
      assert.deepEqual(w.manifest.segments.map((s) => s.rawDigest), b.manifest.segments.map((s) => s.rawDigest));
      assert.notDeepEqual(w.manifest.segments.map((s) => s.digest), b.manifest.segments.map((s) => s.digest));
      assert.ok(!fs.readFileSync(wire.path).equals(fs.readFileSync(built)));
      assert.equal((await verifyOverlay(w, w, { baseId: pair.baseId, compressor })).segments, w.manifest.segments.length);
      const direct = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outFile: path.join(tmp, 'direct.overlay'), compressor, level: 19 });
      assert.equal(direct.overlayId, b.overlayId);
      assert.ok(fs.readFileSync(direct.path).equals(fs.readFileSync(wire.path)), 'create --profile wire and publish\'s re-compression give the same file');
      // and it synthesizes the same launch RAM
      const res = await applyOverlay(w, w, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'launch-wire'), compressor });
      assert.ok(fs.readFileSync(res.ramFile).equals(fs.readFileSync(pair.launch.ramFile)));
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
});
