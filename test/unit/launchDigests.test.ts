/**
 * The launch digests kept beside a synthesized VM's launch overlay (sandbox/handoff/launchDigests.ts):
 * computed from round 0 they hold exactly what the source's decode holds (the next compare finds
 * nothing, a change since is found, on RAM and on the disk layer); written whole, read back equal;
 * a torn file (cut anywhere, a byte flipped), another overlay, base or RAM size, a disk index outside
 * the disk are refused with their reason, never trusted; the child's job makes the file from the
 * VM folder's files; a disk chunk copying a RAM page (which the in-handoff digest copy cannot take)
 * is taken by digest here.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CHUNK_SIZE, encodeSegment, Encoding, type SegmentEntry, type Target } from '../../sandbox/overlay/format';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import { DirtyPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { LayerTracker } from '../../sandbox/handoff/layerTracker';
import { decodeLaunchRound, readLaunchRound, type LaunchRound } from '../../sandbox/handoff/launchRound';
import { computeLaunchDigests, encodeLaunchDigests, parseLaunchDigestsJob, readLaunchDigests, runLaunchDigestsJob, writeLaunchDigests, type LaunchDigests } from '../../sandbox/handoff/launchDigests';
import { OverlayReader } from '../../sandbox/overlay/overlayReader';
import { PROFILES, recompressOverlay } from '../../sandbox/overlay/recompress';
import { PAGE, type GeneratedPair } from './helpers/generatedImages';
import { makeLaunchOverlay } from './helpers/launchOverlay';

describe('handoff launch digests kept beside the launch overlay', function () {
  this.timeout(60_000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let overlayFile: string;
  let overlayId: string;
  let sizes: Record<Target, number>;
  let pages: number;
  let diskChunks: number;
  let round: LaunchRound;
  let kept: LaunchDigests;

  const baseDigests = () => ({ ram: fs.readFileSync(pair.base.ramDigests), disk: fs.readFileSync(pair.base.diskDigests) });
  const baseFiles = () => ({ ram: pair.base.ramFile, disk: pair.base.diskFile });
  const expect = () => ({ overlayId, baseId: pair.baseId, pages, diskChunks });

  before(async () => {
    ({ tmp, pair, compressor, overlayFile, overlayId, sizes } = await makeLaunchOverlay('launch-digests-'));
    pages = pair.ram.length / PAGE;
    diskChunks = Math.ceil(sizes.disk / CHUNK_SIZE);
    const r = await readLaunchRound(overlayFile, overlayId, pair.baseId, sizes);
    assert.ok(!('unusable' in r));
    round = r;
    kept = await computeLaunchDigests(round, baseFiles(), baseDigests(), pages, compressor);
  });
  after(async () => {
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('hold what the in-handoff decode holds: the next compare finds nothing, on RAM and on the layer; a change since is found', async () => {
    // The in-handoff digest copy, as handoffSender decodes it.
    const ref = new DirtyPageTracker(fs.readFileSync(pair.base.ramDigests), pages);
    const fds = { ram: fs.openSync(pair.base.ramFile, 'r'), disk: fs.openSync(pair.base.diskFile, 'r') };
    const baseDiskFd = fs.openSync(pair.base.diskFile, 'r');
    try {
      const refDisk = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      const d = baseDigests();
      await decodeLaunchRound(round, (t, i, out) => { out.fill(0); fs.readSync(fds[t], out, 0, CHUNK_SIZE, i * CHUNK_SIZE); return out; }, {
        hold: (t, i, data) => (t === 'ram' ? ref.hold(i, data) : refDisk.hold(i, data)),
        held: (t, i, out) => (t === 'ram' ? ref.page(i, out) : refDisk.held(i, out)),
        holdCopy: (t, i, rt, r) => { if (t !== 'ram' || rt !== 'ram') return false; ref.holdCopy(i, r); return true; },
        holdBase: (t, i, rt, r) => { if (t !== 'ram') return false; ref.holdDigest(i, d[rt].subarray(r * 32, r * 32 + 32)); return true; },
      }, compressor);
      assert.ok(kept.ram.equals(ref.digests()), 'the RAM digests are the decode\'s, page for page');
      assert.ok(kept.disk.size > 0, 'round 0 stores disk chunks');

      const ram = new DirtyPageTracker(kept.ram, pages);
      assert.equal(await ram.scanFile(pair.launch.ramFile, async () => undefined), 0, 'RAM compare after round 0');
      const disk = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      for (const [i, dg] of kept.disk) disk.holdDigest(i, dg);
      const seen: number[] = [];
      await disk.scan(async (i) => { seen.push(i); }, true);
      assert.deepEqual(seen, [], 'disk scan after round 0');
      // Only digests are kept for round 0's disk chunks: compared by hash. One that does not match
      // what the layer holds (as after a guest write) is found, then recorded; the others are not.
      const [listed, other] = [...kept.disk.keys()];
      const disk2 = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      for (const [i, dg] of kept.disk) disk2.holdDigest(i, i === listed ? Buffer.alloc(32, 9) : dg);
      assert.equal(await disk2.scanChunks([listed, other], async () => undefined), 1, 'the chunk whose digest differs, by the dirty bitmap\'s list');
      assert.equal(await disk2.scanChunks([listed, other], async () => undefined), 0, 'recorded once sent');
      const disk3 = new LayerTracker(pair.launch.diskLayer, baseDiskFd, fs.readFileSync(pair.base.diskDigests));
      for (const [i, dg] of kept.disk) disk3.holdDigest(i, i === other ? Buffer.alloc(32, 9) : dg);
      const found: number[] = [];
      await disk3.scan(async (i) => { found.push(i); }, true);
      assert.deepEqual(found, [other], 'and by the layer scan');
      const page = Buffer.from(pair.ram.subarray(0, PAGE));
      page[1] ^= 1;
      assert.ok(ram.differs(0, page), 'a changed RAM page differs');
    } finally { fs.closeSync(fds.ram); fs.closeSync(fds.disk); fs.closeSync(baseDiskFd); }
  });

  it('written whole and read back equal; a torn file, another overlay, base or RAM size are refused with their reason', () => {
    const file = path.join(tmp, 'launch.digests');
    writeLaunchDigests(file, { overlayId, baseId: pair.baseId }, kept);
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-')), [], 'no temporary file left');
    const back = readLaunchDigests(file, expect());
    assert.ok(!('unusable' in back), JSON.stringify(back));
    assert.ok(back.ram.equals(kept.ram));
    assert.deepEqual([...back.disk.entries()].map(([i, d]) => [i, d.toString('hex')]).sort((x, y) => Number(x[0]) - Number(y[0])),
      [...kept.disk.entries()].map(([i, d]) => [i, d.toString('hex')]).sort((x, y) => Number(x[0]) - Number(y[0])));

    const why = (e = expect()) => { const r = readLaunchDigests(file, e); assert.ok('unusable' in r, 'refused'); return r.unusable; };
    assert.match(why({ ...expect(), overlayId: 'ab'.repeat(32) }), /for overlay .*round 0 is abababababab/);
    assert.match(why({ ...expect(), baseId: 'cd'.repeat(32) }), /for base .*the VM runs cdcdcdcdcdcd/);
    assert.match(why({ ...expect(), pages: pages * 2 }), /RAM pages, the VM has/);
    assert.match(why({ ...expect(), diskChunks: 1 }), /outside the disk/);

    const whole = encodeLaunchDigests({ overlayId, baseId: pair.baseId }, kept);
    // A torn write: cut at any length (the start of the file, mid-header, mid-RAM, mid-disk, the checksum).
    for (const cut of [0, 5, 12, 40, 100, whole.length >> 1, whole.length - 40, whole.length - 1]) {
      fs.writeFileSync(file, whole.subarray(0, cut));
      assert.match(why(), /torn|not one/, `cut at ${cut}`);
    }
    const flipped = Buffer.from(whole);
    flipped[whole.length >> 1] ^= 1;
    fs.writeFileSync(file, flipped);
    assert.match(why(), /torn/);
    fs.rmSync(file);
    assert.match(why(), /no launch digests kept/);
  });

  it('read lazily (the child: one segment or xz unit in memory at a time) round 0 gives the same digests, from the build file and its wire copy; a segment corrupt in the file fails the lazy decode where the eager read calls the overlay unusable', async () => {
    const wire = await recompressOverlay(overlayFile, path.join(tmp, 'wire.overlay'), { codec: PROFILES.wire, compressor });
    for (const [file, units] of [[overlayFile, false], [wire.path, true]] as const) {
      const lazy = await readLaunchRound(file, overlayId, pair.baseId, sizes, { units: true, lazy: true });
      assert.ok(!('unusable' in lazy));
      try {
        assert.equal(lazy.data.length, 0, 'nothing read up front');
        assert.equal(!!lazy.units, units);
        const d = await computeLaunchDigests(lazy, baseFiles(), baseDigests(), pages, compressor);
        assert.ok(d.ram.equals(kept.ram), `RAM digests (${file})`);
        assert.deepEqual([...d.disk.entries()].sort((a, b) => a[0] - b[0]), [...kept.disk.entries()].sort((a, b) => a[0] - b[0]));
      } finally { lazy.close?.(); }
    }
    // One byte of the last chunk segment flipped in a copy of the file.
    const bad = path.join(tmp, 'bad.overlay');
    fs.copyFileSync(overlayFile, bad);
    const rd = OverlayReader.open(bad);
    const last = round.segments[round.segments.length - 1];
    const at = rd.segmentRange(last.digest).offset + 8;
    rd.close();
    const fd = fs.openSync(bad, 'r+');
    const b = Buffer.alloc(1); fs.readSync(fd, b, 0, 1, at); b[0] ^= 0xff; fs.writeSync(fd, b, 0, 1, at); fs.closeSync(fd);
    const eager = await readLaunchRound(bad, overlayId, pair.baseId, sizes);
    assert.ok('unusable' in eager && /cannot be read|segment/.test(eager.unusable));
    const lazy = await readLaunchRound(bad, overlayId, pair.baseId, sizes, { lazy: true });
    assert.ok(!('unusable' in lazy));
    try {
      await assert.rejects(computeLaunchDigests(lazy, baseFiles(), baseDigests(), pages, compressor), new RegExp(last.digest.slice(7, 19)));
    } finally { lazy.close?.(); }
  });

  it('the child\'s job makes the file from the VM folder (launch overlay + its recorded ID) and reads the RAM file; a job without its overlay, RAM file or with a bad field fails', async () => {
    const vm = path.join(tmp, 'vm');
    fs.mkdirSync(vm);
    fs.copyFileSync(overlayFile, path.join(vm, 'launch.overlay'));
    fs.writeFileSync(path.join(vm, 'launch.overlay.id'), overlayId);
    const job = parseLaunchDigestsJob(JSON.stringify({
      launchOverlay: path.join(vm, 'launch.overlay'), launchOverlayId: path.join(vm, 'launch.overlay.id'), out: path.join(vm, 'launch.digests'),
      baseId: pair.baseId, base: { ...baseFiles(), ramDigests: pair.base.ramDigests, diskDigests: pair.base.diskDigests }, ramBytes: pair.ram.length,
    }));
    // With the VM's RAM file to read into the page cache afterwards (a sparse file here: its holes read as zeros).
    const ramFile = path.join(vm, 'ram.raw');
    fs.writeFileSync(ramFile, '');
    fs.truncateSync(ramFile, pair.ram.length);
    job.warmRam = ramFile;
    const done = await runLaunchDigestsJob(job);
    assert.equal(done.diskChunks, kept.disk.size);
    const back = readLaunchDigests(job.out, expect());
    assert.ok(!('unusable' in back) && back.ram.equals(kept.ram));
    await assert.rejects(runLaunchDigestsJob({ ...job, out: path.join(vm, 'warm.digests'), warmRam: path.join(vm, 'missing.raw') }), /ENOENT/);
    fs.writeFileSync(job.launchOverlayId, 'ef'.repeat(32));
    await assert.rejects(runLaunchDigestsJob({ ...job, out: path.join(vm, 'other.digests') }), /no launch digests: .*not the efefefefefef/);
    assert.ok(!fs.existsSync(path.join(vm, 'other.digests')));
    assert.throws(() => parseLaunchDigestsJob('{"launchOverlay": "x"}'), /lacks a field/);
    assert.throws(() => parseLaunchDigestsJob(JSON.stringify({ ...job, ramBytes: 4097 })), /lacks a field/);
    assert.throws(() => parseLaunchDigestsJob('not json'), /not JSON/);
    assert.throws(() => parseLaunchDigestsJob(JSON.stringify({ ...job, warmRam: 7 })), /lacks a field/);
    assert.throws(() => parseLaunchDigestsJob(JSON.stringify({ ...job, parentPid: -1 })), /lacks a field/);
    assert.equal(parseLaunchDigestsJob(JSON.stringify({ ...job, parentPid: 1234 })).parentPid, 1234);
  });

  it('a disk chunk of round 0 copying a RAM page is taken by digest (the in-handoff digest copy needs its bytes)', async () => {
    const rawRam = encodeSegment([{ encoding: Encoding.Raw, index: 5, ref: 0, refTarget: 'ram' }], [Buffer.alloc(PAGE, 7)]);
    const rawDisk = encodeSegment([{ encoding: Encoding.Self, index: 2, ref: 5, refTarget: 'ram' }], []);
    const cr = await compressor.compress(rawRam, 3), cd = await compressor.compress(rawDisk, 3);
    const segments: SegmentEntry[] = [
      { digest: cr.digest, kind: 'chunks', target: 'ram', size: cr.data.length, rawSize: rawRam.length, rawDigest: cr.rawDigest, records: 1, chunks: [[5, 1]] },
      { digest: cd.digest, kind: 'chunks', target: 'disk', size: cd.data.length, rawSize: rawDisk.length, rawDigest: cd.rawDigest, records: 1, chunks: [[2, 1]] },
    ];
    const d = await computeLaunchDigests({ overlayId: 'x', segments, data: [cr.data, cd.data], chunks: { ram: 1, disk: 1 } }, baseFiles(), baseDigests(), pages, compressor);
    const sevens = createHash('sha256').update(Buffer.alloc(PAGE, 7)).digest();
    assert.ok(d.ram.subarray(5 * 32, 6 * 32).equals(sevens));
    assert.ok(d.disk.get(2)?.equals(sevens), 'disk chunk 2 holds RAM page 5\'s digest');
  });
});
