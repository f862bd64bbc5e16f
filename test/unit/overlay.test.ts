import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compress, decompress } from 'zstd-napi';
import { isCloudletError } from '../../sandbox/common/errors';
import {
  applyOverlay, createOverlay, OverlayReader, overlayInfo, formatOverlayInfo, verifyOverlay, SegmentCompressor, canonicalJson,
} from '../../sandbox/overlay';
import type { OverlayManifest, SegmentSource } from '../../sandbox/overlay';
import { CONTAINER_HEADER_SIZE, decodeSegment, encodeContainerHeader, encodeSegment, Encoding, segmentName } from '../../sandbox/overlay/format';
import { GeneratedPair, makePair, PAGE } from './helpers/generatedImages';
import { applyOverlayInto, ramChunksOf } from '../../sandbox/overlay/apply';
import { cloneFileInBackground } from '../../sandbox/qemu/files';
import { createDiskLayer } from '../../sandbox/sandboxes/prepareFiles';

/** Rewrites a container with a changed manifest and/or segments (what an attacker or a bad disk would do). */
function rewrite(src: string, dest: string, change: (m: OverlayManifest, segs: Map<string, Buffer>) => void): string {
  const r = OverlayReader.open(src);
  const m = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
  const segs = new Map<string, Buffer>();
  const file = fs.readFileSync(src);
  for (const s of r.segmentRanges()) segs.set(s.digest, file.subarray(s.offset, s.offset + s.length));
  r.close();
  change(m, segs);
  // A careful forger keeps the breakdown's compressed totals in line with the segments it swapped in.
  for (const t of ['ram', 'disk'] as const) m.breakdown[t].compressedBytes = m.segments.filter((s) => s.kind === 'chunks' && s.target === t).reduce((n, s) => n + s.size, 0);
  const mb = Buffer.from(canonicalJson(m));
  fs.writeFileSync(dest, Buffer.concat([encodeContainerHeader(mb), mb, ...m.segments.map((s) => segs.get(s.digest) ?? Buffer.alloc(0))]));
  return dest;
}

describe('overlay: format, create and apply on generated images', function () {
  this.timeout(60000);
  let tmp: string;
  let pair: GeneratedPair;
  let overlayPath: string;
  let compressor: SegmentCompressor;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-test-'));
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
    overlayPath = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays'), compressor })).path;
  });
  after(async () => {
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const apply = async (file: string, outDir: string, baseId = pair.baseId, source?: SegmentSource) => {
    const r = OverlayReader.open(file);
    try {
      return await applyOverlay(r, source ?? r, { baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir, compressor });
    } finally {
      r.close();
    }
  };

  it('round trip: apply(create(base, launch)) equals launch byte for byte (RAM and disk), with every encoding used', async () => {
    const out = path.join(tmp, 'launch-rt');
    const res = await apply(overlayPath, out);
    assert.ok(fs.readFileSync(res.ramFile).equals(pair.ram), 'RAM differs');
    // No reflink on the test filesystem: the base RAM copy left out the overlay's pages, so its zero
    // pages over base data (100..109) were never written: still a hole.
    const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-f', 'raw', res.ramFile]).toString()) as Array<{ start: number; length: number; data: boolean }>;
    assert.ok(map.some((e) => !e.data && e.start <= 100 * PAGE && e.start + e.length >= 110 * PAGE), `pages 100..109 are a hole: ${JSON.stringify(map)}`);
    execFileSync('qemu-img', ['compare', '-q', res.diskLayer, pair.launch.diskRaw]);
    const check = execFileSync('qemu-img', ['check', res.diskLayer]).toString();
    assert.match(check, /No errors were found/);
    assert.ok(fs.readFileSync(res.deviceState).equals(fs.readFileSync(pair.launch.deviceState)));
    const info = overlayInfo(OverlayReader.open(overlayPath).manifest);
    for (const t of ['ram', 'disk'] as const) {
      for (const e of ['zero', 'baseRam', 'baseDisk', 'self', 'raw', 'xor'] as const) assert.ok(info[t].byEncoding[e].chunks > 0, `${t} has no ${e} chunk`);
    }
    // RAM pages that are the page cache of new disk chunks are copies of those, not literals.
    assert.ok(info.ram.bySource.overlayDisk.chunks >= 15);
    // Rewritten-but-identical chunks (qemu-io wrote the same bytes) are not changes.
    // new files 100, zeroed 10, base RAM copies 10, base disk copies 10, repeated 10, edits 10, last chunk 1
    assert.equal(info.disk.changedChunks, 151);
    assert.match(formatOverlayInfo(info), /memory: \d+ changed chunks/);
  });

  it('into prepared files whose base RAM copy left out the overlay\'s pages: the same bytes, zero pages over base data never written', async () => {
    const dir = path.join(tmp, 'into-left-out');
    fs.mkdirSync(dir);
    const ramFile = path.join(dir, 'ram'), diskLayer = path.join(dir, 'disk.qcow2');
    const r = OverlayReader.open(overlayPath);
    try {
      const listed = ramChunksOf(r.manifest);
      const copy = cloneFileInBackground(pair.base.ramFile, ramFile, { chunks: listed, chunkSize: PAGE });
      assert.equal(copy.leftOut, true, 'no reflink on the test filesystem: the copy leaves the pages out');
      await copy.done;
      // The copy wrote none of the listed pages: they read as zeros (e.g. pages 100..109, base data the overlay zeroes).
      const copied = fs.readFileSync(ramFile), baseRam = fs.readFileSync(pair.base.ramFile);
      for (let i = 0; i < listed.length; i++) {
        const want = listed[i] ? Buffer.alloc(PAGE) : baseRam.subarray(i * PAGE, (i + 1) * PAGE);
        assert.ok(copied.subarray(i * PAGE, (i + 1) * PAGE).equals(want), `page ${i} after the copy`);
      }
      assert.ok(listed[100] === 1 && !baseRam.subarray(100 * PAGE, 101 * PAGE).equals(Buffer.alloc(PAGE)), 'the pair has a zero page over base data');
      await createDiskLayer(diskLayer, pair.base.diskFile);
      const applied = await applyOverlayInto(r, r, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile },
        { files: Promise.resolve({ ramFile, diskLayer, ramLeftOut: true }), ramReady: copy.done, diskOpened: Promise.resolve() }, { compressor });
      assert.ok(fs.readFileSync(ramFile).equals(pair.ram), 'RAM differs');
      // The zero pages were not written: still a hole.
      const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-f', 'raw', ramFile]).toString()) as Array<{ start: number; length: number; data: boolean }>;
      assert.ok(map.some((e) => !e.data && e.start <= 100 * PAGE && e.start + e.length >= 110 * PAGE), `pages 100..109 are a hole: ${JSON.stringify(map)}`);
      execFileSync('qemu-img', ['compare', '-q', diskLayer, pair.launch.diskRaw]);
      assert.ok(applied.deviceState.equals(fs.readFileSync(pair.launch.deviceState)));
    } finally {
      r.close();
    }
  });

  for (const clusterSize of [512, 65536]) {
    it(`round trip with a qcow2 layer of ${clusterSize}-byte clusters`, async () => {
      const p = makePair(path.join(tmp, `pair-${clusterSize}`), { clusterSize });
      const c = await createOverlay({ baseId: p.baseId, ...p.base }, p.launch, { outDir: path.join(tmp, `ov-${clusterSize}`), compressor });
      const r = OverlayReader.open(c.path);
      const res = await applyOverlay(r, r, { baseId: p.baseId, ramFile: p.base.ramFile, diskFile: p.base.diskFile }, { outDir: path.join(tmp, `launch-${clusterSize}`), compressor });
      r.close();
      assert.ok(fs.readFileSync(res.ramFile).equals(p.ram));
      execFileSync('qemu-img', ['compare', '-q', res.diskLayer, p.launch.diskRaw]);
    });
  }

  it('zero clusters (what fstrim leaves): over base zeros no change, over base data a zero record; the round trip holds', async () => {
    const p = makePair(path.join(tmp, 'pair-trim'));
    const before = await createOverlay({ baseId: p.baseId, ...p.base }, p.launch, { outDir: path.join(tmp, 'ov-trim-before'), compressor });
    // Base disk chunks 1200..1299 are zeros, 1520..1529 text; chunks 1050..1059 hold new data in the launch.
    const launchDisk = Buffer.from(p.disk);
    for (const [at, n] of [[1200, 100], [1520, 10], [1050, 10]]) {
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -q -z ${at * PAGE} ${n * PAGE}`, p.launch.diskLayer]);
      launchDisk.fill(0, at * PAGE, (at + n) * PAGE);
    }
    fs.writeFileSync(p.launch.diskRaw, launchDisk);
    const after = await createOverlay({ baseId: p.baseId, ...p.base }, p.launch, { outDir: path.join(tmp, 'ov-trim-after'), compressor });
    const b = before.manifest.breakdown.disk, a = after.manifest.breakdown.disk;
    // 1200..1299: zeros over zeros, not listed; 1520..1529: text put to zeros, 10 zero records;
    // 1050..1059: new data (raw before) trimmed back to the base's zeros, no longer a change.
    assert.equal(a.encodings.zero, b.encodings.zero + 10);
    assert.equal(a.encodings.raw, b.encodings.raw - 10);
    assert.equal(a.chunks, b.chunks + 10 - 10);
    const r = OverlayReader.open(after.path);
    const res = await applyOverlay(r, r, { baseId: p.baseId, ramFile: p.base.ramFile, diskFile: p.base.diskFile }, { outDir: path.join(tmp, 'launch-trim'), compressor });
    r.close();
    execFileSync('qemu-img', ['compare', '-q', res.diskLayer, p.launch.diskRaw]);
  });

  it('determinism: two creations from the same inputs give the same overlay ID and bytes', async () => {
    const again = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outFile: path.join(tmp, 'again.overlay'), compressor });
    assert.equal(again.overlayId, OverlayReader.open(overlayPath).overlayId);
    assert.ok(fs.readFileSync(again.path).equals(fs.readFileSync(overlayPath)));
    assert.equal(path.basename(overlayPath), `${again.overlayId}.overlay`);
  });

  it('verify passes on a good overlay and the reader exposes segment byte ranges', async () => {
    const r = OverlayReader.open(overlayPath);
    const v = await verifyOverlay(r, r, { baseId: pair.baseId, compressor });
    assert.equal(v.segments, r.manifest.segments.length);
    const file = fs.readFileSync(overlayPath);
    for (const s of r.segmentRanges()) assert.equal(segmentName(file.subarray(s.offset, s.offset + s.length)), s.digest);
    assert.equal(file.subarray(8, 12).readUInt32BE(0), 1);
    r.close();
  });

  describe('bad input is refused with its own message and leaves nothing behind', () => {
    const expectRefused = async (file: string | (() => Promise<unknown>), code: string, message: RegExp, baseId?: string) => {
      const out = path.join(tmp, `bad-${Math.random().toString(36).slice(2)}`);
      const run = typeof file === 'string' ? () => apply(file, out, baseId) : file;
      await assert.rejects(run, (e: unknown) => {
        assert.ok(isCloudletError(e), `not a CloudletError: ${String(e)}`);
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      });
      assert.ok(!fs.existsSync(out), 'output folder exists');
      assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.includes('.partial')), [], 'partial output left behind');
    };

    it('truncated overlay', async () => {
      const f = path.join(tmp, 'truncated.overlay');
      const b = fs.readFileSync(overlayPath);
      fs.writeFileSync(f, b.subarray(0, b.length - 1000));
      await expectRefused(f, 'Corrupt', /truncated: \d+ bytes, its manifest needs \d+/);
      fs.writeFileSync(f, b.subarray(0, CONTAINER_HEADER_SIZE + 10));
      await expectRefused(f, 'Corrupt', /truncated/);
    });

    it('one flipped byte in a segment', async () => {
      const f = path.join(tmp, 'flipped.overlay');
      const r = OverlayReader.open(overlayPath);
      const seg = r.segmentRanges()[0];
      r.close();
      const b = fs.readFileSync(overlayPath);
      b[seg.offset + Math.floor(seg.length / 2)] ^= 0x01;
      fs.writeFileSync(f, b);
      await expectRefused(f, 'Corrupt', new RegExp(`segment ${seg.digest} is corrupt: its bytes hash to sha256:`));
    });

    it('manifest naming another base ID', async () => {
      const f = rewrite(overlayPath, path.join(tmp, 'otherbase.overlay'), (m) => { m.baseId = 'ab'.repeat(32); });
      await expectRefused(f, 'Mismatch', /overlay was made for base abab.*but the base given is/);
    });

    it('chunk indices outside the image (manifest and segment records)', async () => {
      const f = rewrite(overlayPath, path.join(tmp, 'outside.overlay'), (m) => {
        const s = m.segments.find((x) => x.target === 'ram')!;
        s.chunks![s.chunks!.length - 1][0] = m.ram.size / PAGE + 5;
      });
      await expectRefused(f, 'Corrupt', /names ram chunks \d+\.\.\d+, outside the ram image \(1024 chunks\)/);
      // A well-formed manifest whose segment copies a base page past the end of the base.
      const g = rewrite(overlayPath, path.join(tmp, 'outside-ref.overlay'), (m, segs) => {
        const s = m.segments.find((x) => x.target === 'ram')!;
        const raw = Buffer.from(decompress(segs.get(s.digest)!));
        const { records } = decodeSegment(raw, s.digest);
        const k = records.findIndex((x) => x.encoding === Encoding.BaseRam);
        raw.writeUInt32LE(99999, 16 + k * 12 + 8);
        const c = compress(raw, { compressionLevel: 3 });
        segs.set(segmentName(c), c);
        s.digest = segmentName(c); s.size = c.length; s.rawDigest = segmentName(raw); // a careful forger names the new content too
      });
      await expectRefused(g, 'Corrupt', /refers to base ram chunk 99999, outside the base image \(1024 chunks\)/);
    });

    it('a copy of a chunk the overlay does not store (its segment checked out): refused once every segment was applied', async () => {
      const f = rewrite(overlayPath, path.join(tmp, 'self-unstored.overlay'), (m, segs) => {
        const listed = ramChunksOf(m);
        const unlisted = listed.findIndex((x) => x === 0);
        const s = m.segments.find((x) => x.kind === 'chunks' && decodeSegment(Buffer.from(decompress(segs.get(x.digest)!)), x.digest).records.some((r) => r.encoding === Encoding.Self))!;
        const raw = Buffer.from(decompress(segs.get(s.digest)!));
        const k = decodeSegment(raw, s.digest).records.findIndex((x) => x.encoding === Encoding.Self);
        raw[16 + k * 12 + 1] = 0; // copies RAM
        raw.writeUInt32LE(unlisted, 16 + k * 12 + 8);
        const c = compress(raw, { compressionLevel: 3 });
        segs.set(segmentName(c), c);
        s.digest = segmentName(c); s.size = c.length; s.rawDigest = segmentName(raw);
      });
      await expectRefused(f, 'Corrupt', /(ram|disk) chunk \d+ copies ram chunk \d+, which this overlay does not store/);
    });

    it('path-like names', async () => {
      const f = rewrite(overlayPath, path.join(tmp, 'pathlike.overlay'), (m) => { m.baseId = '../../../etc/passwd'; });
      await expectRefused(f, 'BadInput', /baseId "..\/..\/..\/etc\/passwd" is not of the form/);
      const g = rewrite(overlayPath, path.join(tmp, 'pathlike2.overlay'), (m, segs) => {
        const s = m.segments[0];
        const data = segs.get(s.digest)!;
        s.digest = 'sha256:../../x';
        segs.set(s.digest, data);
      });
      await expectRefused(g, 'BadInput', /segments\[0\]\.digest "sha256:..\/..\/x" is not of the form/);
    });

    it('sizes past sane limits (decompression bomb)', async () => {
      const bomb = compress(Buffer.alloc(200 << 20), { compressionLevel: 19 });
      assert.ok(bomb.length < 1 << 20);
      const name = segmentName(bomb);
      // Declared honestly in the manifest: refused before anything is fetched.
      const f = rewrite(overlayPath, path.join(tmp, 'bomb1.overlay'), (m, segs) => {
        m.segments[0] = { ...m.segments[0], digest: name, size: bomb.length, rawSize: 200 << 20 };
        segs.set(name, bomb);
      });
      await expectRefused(f, 'BadInput', /segments\[0\]\.rawSize 209715200 is over the limit of 67108864/);
      // Lied about in the manifest: the frame header gives it away before decompression.
      const g = rewrite(overlayPath, path.join(tmp, 'bomb2.overlay'), (m, segs) => {
        m.segments[0] = { ...m.segments[0], digest: name, size: bomb.length };
        segs.set(name, bomb);
      });
      await expectRefused(g, 'Corrupt', /would decompress to 209715200 bytes .* refused as a possible decompression bomb/);
      // A second frame after an honest first one (zstd decompresses every frame; only the first header was read).
      const h = rewrite(overlayPath, path.join(tmp, 'bomb3.overlay'), (m, segs) => {
        const two = Buffer.concat([segs.get(m.segments[0].digest)!, bomb]);
        m.segments[0] = { ...m.segments[0], digest: segmentName(two), size: two.length };
        segs.set(segmentName(two), two);
      });
      await expectRefused(h, 'Corrupt', /is not one zstd frame declaring its decompressed size; refused/);
      // A skippable frame first (its header declares nothing), the bomb behind it.
      const skippable = Buffer.alloc(12); skippable.writeUInt32LE(0x184d2a50, 0); skippable.writeUInt32LE(4, 4);
      const k = rewrite(overlayPath, path.join(tmp, 'bomb4.overlay'), (m, segs) => {
        const two = Buffer.concat([skippable, bomb]);
        m.segments[0] = { ...m.segments[0], digest: segmentName(two), size: two.length };
        segs.set(segmentName(two), two);
      });
      await expectRefused(k, 'Corrupt', /is not one zstd frame declaring its decompressed size; refused/);
    });

    it('a segment source that returns the wrong bytes, and verify of a damaged overlay', async () => {
      const r = OverlayReader.open(overlayPath);
      const short: SegmentSource = { getSegment: async (d, size) => (await r.getSegment(d)).subarray(0, size - 1) };
      await expectRefused(() => applyOverlay(r, short, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'never'), compressor }), 'Corrupt', /is \d+ bytes but the manifest says \d+/);
      await expectRefused(() => verifyOverlay(r, r, { baseId: 'cd'.repeat(32), compressor }), 'Mismatch', /made for base/);
      r.close();
    });

    it('not an overlay at all', async () => {
      const f = path.join(tmp, 'notoverlay.bin');
      fs.writeFileSync(f, Buffer.alloc(100, 7));
      await expectRefused(f, 'BadInput', /not a cloudlet overlay/);
    });
  });

  it('cancelling creation or synthesis (Ctrl-C) leaves no overlay and no half-built files', async () => {
    const outDir = path.join(tmp, 'cancelled');
    const ac = new AbortController();
    await assert.rejects(createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, {
      outDir, compressor, signal: ac.signal, progress: (e) => { if (e.phase === 'scan-ram') ac.abort(); },
    }), (e: unknown) => isCloudletError(e, 'Cancelled'));
    assert.deepEqual(fs.readdirSync(outDir), []);
    const r = OverlayReader.open(overlayPath);
    const ac2 = new AbortController();
    const launchDir = path.join(tmp, 'cancelled-launch');
    await assert.rejects(applyOverlay(r, r, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, {
      outDir: launchDir, compressor, signal: ac2.signal, progress: () => ac2.abort(),
    }), (e: unknown) => isCloudletError(e, 'Cancelled'));
    r.close();
    assert.ok(!fs.existsSync(launchDir));
    assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.startsWith('cancelled-launch')), []);
  });

  it('segment encoding round-trips records and payload', () => {
    const payload = [Buffer.alloc(PAGE, 1), Buffer.alloc(PAGE, 2)];
    const recs = [
      { encoding: Encoding.Zero, index: 1, ref: 0, refTarget: 'ram' as const },
      { encoding: Encoding.Raw, index: 2, ref: 0, refTarget: 'ram' as const },
      { encoding: Encoding.Self, index: 3, ref: 7, refTarget: 'disk' as const },
      { encoding: Encoding.Xor, index: 4, ref: 0, refTarget: 'ram' as const },
    ];
    const d = decodeSegment(encodeSegment(recs, payload), 'x');
    assert.deepEqual(d.records, recs);
    assert.deepEqual(Array.from(d.payloadOffsets), [-1, 16 + 48, -1, 16 + 48 + PAGE]);
  });
});
