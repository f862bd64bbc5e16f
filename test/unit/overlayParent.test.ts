import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { applyOverlay, canonicalJson, createOverlay, OverlayReader, SegmentCompressor, verifyOverlay } from '../../sandbox/overlay';
import type { OverlayManifest } from '../../sandbox/overlay';
import { encodeContainerHeader, validateManifest } from '../../sandbox/overlay/format';
import { applyChain, folderLookup, resolveChain, type ChainHop } from '../../sandbox/overlay/parentChain';
import { flattenOverlay } from '../../sandbox/overlay/flatten';
import { GeneratedPair, makePair, PAGE, prng } from './helpers/generatedImages';

/** Rewrites a container with a changed manifest (what a forger would do); segments kept. */
function rewrite(src: string, destDir: string, change: (m: OverlayManifest) => void): { file: string; overlayId: string } {
  const r = OverlayReader.open(src);
  const m = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
  const file = fs.readFileSync(src);
  const segs = r.segmentRanges().map((s) => file.subarray(s.offset, s.offset + s.length));
  r.close();
  change(m);
  const mb = Buffer.from(canonicalJson(m));
  const tmp = path.join(destDir, `rewrite-${Math.random().toString(36).slice(2)}.tmp`);
  fs.mkdirSync(destDir, { recursive: true });
  fs.writeFileSync(tmp, Buffer.concat([encodeContainerHeader(mb), mb, ...segs]));
  const id = OverlayReader.open(tmp);
  id.close();
  const dest = path.join(destDir, `${id.overlayId}.overlay`);
  fs.renameSync(tmp, dest);
  return { file: dest, overlayId: id.overlayId };
}

const hopOf = (r: OverlayReader): ChainHop => ({ manifest: r.manifest, overlayId: r.overlayId, source: r });

describe('parent overlays: a child stored against its parent\'s launch (issue 13.3)', function () {
  this.timeout(120000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let store: string;
  let v1: { overlayId: string; path: string; bytes: number };
  let child: { overlayId: string; path: string; bytes: number; manifest: OverlayManifest };
  let flatBytes: number;
  let v2Ram: Buffer, v2DiskRaw: string;
  const readers: OverlayReader[] = [];

  const refused = async (run: () => Promise<unknown>, code: string, message: RegExp) => {
    await assert.rejects(run, (e: unknown) => {
      assert.ok(isCloudletError(e), `not a CloudletError: ${String(e)}`);
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      return true;
    });
  };
  const open = (file: string) => { const r = OverlayReader.open(file); readers.push(r); return r; };

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-parent-'));
    store = path.join(tmp, 'store');
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
    v1 = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: store, compressor });
    const a1 = await applyOverlay(open(v1.path), open(v1.path), { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'v1-launch'), compressor });

    // v2: v1 plus a few changes, some of v1's changes put back to the base's bytes.
    v2Ram = Buffer.from(pair.ram);
    prng(11, 8 * PAGE).copy(v2Ram, 500 * PAGE);                                // new pages
    for (let i = 600; i < 604; i++) v2Ram.writeUInt32LE(0xabcdef + i, i * PAGE + 16); // small edits
    const baseRam = fs.readFileSync(pair.base.ramFile);
    baseRam.copy(v2Ram, 140 * PAGE, 140 * PAGE, 150 * PAGE);                   // v1's random pages back to the base
    const v2Disk = Buffer.from(pair.disk);
    prng(12, 20 * PAGE).copy(v2Disk, 1200 * PAGE);                             // a new file
    const baseDisk = fs.readFileSync(pair.base.diskFile);
    baseDisk.copy(v2Disk, 1000 * PAGE, 1000 * PAGE, 1005 * PAGE);              // v1's new chunks back to the base
    v2Disk.writeUInt32LE(0x77777777, 1050 * PAGE);                             // an edit of a v1 chunk
    const f = (n: string) => path.join(tmp, n);
    fs.writeFileSync(f('v2-ram.raw'), v2Ram);
    fs.writeFileSync(f('v2-disk.raw'), v2Disk);
    v2DiskRaw = f('v2-disk.raw');
    // The sandbox's layer is over the base disk and does not map chunks equal to the base's.
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-B', pair.base.diskFile, '-F', 'raw', '-o', 'cluster_size=4096', v2DiskRaw, f('v2-layer.qcow2')]);
    const launch = { ...pair.launch, ramFile: f('v2-ram.raw'), diskLayer: f('v2-layer.qcow2') };
    flatBytes = (await createOverlay({ baseId: pair.baseId, ...pair.base }, launch, { outFile: f('v2-flat.overlay'), compressor })).bytes;
    child = await createOverlay({ baseId: pair.baseId, ...pair.base, parent: { overlayId: v1.overlayId, depth: 0, ramFile: a1.ramFile, diskLayer: a1.diskLayer } }, launch, { outDir: store, compressor });
  });
  after(async () => {
    for (const r of readers) { try { r.close(); } catch { /* closed */ } }
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the child names its parent (ID and depth 1), is much smaller than v2 against the base, and verifies', async () => {
    assert.deepEqual(child.manifest.parent, { id: v1.overlayId, depth: 1 });
    assert.equal(child.manifest.baseId, pair.baseId);
    assert.ok(child.bytes < flatBytes * 0.5, `child ${child.bytes} bytes vs v2 against the base ${flatBytes}`);
    // The chunks v1 changed and v2 put back are listed (5 disk chunks, 10 RAM pages): 20 + 1 + 5 disk chunks.
    assert.equal(child.manifest.breakdown.disk.chunks, 26);
    assert.equal(child.manifest.breakdown.ram.chunks, 8 + 4 + 10);
    const r = open(child.path);
    assert.equal(r.overlayId, child.overlayId);
    await verifyOverlay(r, r, { baseId: pair.baseId, compressor });
  });

  it('synthesis resolves the chain and builds v2\'s launch byte for byte (RAM and a clean qcow2 over the base)', async () => {
    const leaf = open(child.path);
    const chain = await resolveChain(hopOf(leaf), folderLookup([store], readers));
    assert.deepEqual(chain.map((h) => h.overlayId), [v1.overlayId, child.overlayId]);
    const out = path.join(tmp, 'v2-launch');
    const res = await applyChain(chain, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: out, compressor });
    assert.ok(fs.readFileSync(res.ramFile).equals(v2Ram), 'RAM differs');
    execFileSync('qemu-img', ['compare', '-q', res.diskLayer, v2DiskRaw]);
    assert.match(execFileSync('qemu-img', ['check', res.diskLayer]).toString(), /No errors were found/);
    assert.match(execFileSync('qemu-img', ['info', res.diskLayer]).toString(), new RegExp(`backing file: ${pair.base.diskFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.includes('.chain-') || n.includes('.partial')), []);
  });

  it('flatten: the chain becomes one overlay against the base (no parent) that builds v2\'s launch alone', async () => {
    const leaf = open(child.path);
    const flat = await flattenOverlay(hopOf(leaf), folderLookup([store], readers), { baseId: pair.baseId, ...pair.base }, { outFile: path.join(tmp, 'flattened.overlay'), workDir: tmp, compressor });
    assert.deepEqual(flat.chain, [v1.overlayId, child.overlayId]);
    assert.equal(flat.manifest.parent, undefined);
    const r = open(flat.path);
    const res = await applyOverlay(r, r, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(tmp, 'flat-launch'), compressor });
    assert.ok(fs.readFileSync(res.ramFile).equals(v2Ram), 'RAM differs');
    execFileSync('qemu-img', ['compare', '-q', res.diskLayer, v2DiskRaw]);
    assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.startsWith('flatten-')), []);
  });

  it('the schema: parent needs a 64-hex id and a depth of 1..4, nothing else', () => {
    const m = JSON.parse(canonicalJson(child.manifest)) as Record<string, unknown>;
    const tryParent = (p: unknown) => validateManifest({ ...m, parent: p });
    tryParent({ id: v1.overlayId, depth: 4 });
    for (const [p, why] of [
      [{ id: v1.overlayId, depth: 0 }, /parent\.depth/], [{ id: v1.overlayId, depth: 5 }, /parent\.depth/],
      [{ id: v1.overlayId.toUpperCase(), depth: 1 }, /parent\.id/], [{ id: '../x', depth: 1 }, /parent\.id/],
      [{ id: v1.overlayId }, /depth/], [{ id: v1.overlayId, depth: 1, url: 'x' }, /url/],
    ] as Array<[unknown, RegExp]>) {
      assert.throws(() => tryParent(p), (e: unknown) => isCloudletError(e, 'BadInput') && why.test(e.message), JSON.stringify(p));
    }
  });

  it('the child\'s ID covers its parent reference: the same records under another parent are another overlay', () => {
    const other = rewrite(child.path, path.join(tmp, 'other'), (m) => { m.parent = { id: 'ab'.repeat(32), depth: 1 }; });
    assert.notEqual(other.overlayId, child.overlayId);
  });

  it('refused: a missing parent (NotFound, "pull or publish ... first"), before any byte is used', async () => {
    const leaf = open(child.path);
    await refused(() => resolveChain(hopOf(leaf), folderLookup([path.join(tmp, 'empty')], readers)), 'NotFound', new RegExp(`needs its parent overlay ${v1.overlayId}.*pull or publish ${v1.overlayId.slice(0, 12)} first`));
  });

  it('refused: a tampered parent (another overlay under the parent\'s ID) is an ID mismatch (Corrupt)', async () => {
    const fake = path.join(tmp, 'fake');
    fs.mkdirSync(fake);
    fs.copyFileSync(path.join(tmp, 'v2-flat.overlay'), path.join(fake, `${v1.overlayId}.overlay`));
    await refused(() => resolveChain(hopOf(open(child.path)), folderLookup([fake], readers)), 'Corrupt', /tampered/);
  });

  it('refused: a parent made for another base (Mismatch)', async () => {
    const dir = path.join(tmp, 'otherbase');
    const p = rewrite(v1.path, dir, (m) => { m.baseId = 'cd'.repeat(32); });
    const c = rewrite(child.path, dir, (m) => { m.parent = { id: p.overlayId, depth: 1 }; });
    await refused(() => resolveChain(hopOf(open(c.file)), folderLookup([dir], readers)), 'Mismatch', /made for base cdcd.*refused/);
  });

  it('refused: a depth that is not its parent\'s + 1 (Corrupt), and a child past the cap of 4 is never written', async () => {
    const dir = path.join(tmp, 'depth');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(v1.path, path.join(dir, `${v1.overlayId}.overlay`));
    const c = rewrite(child.path, dir, (m) => { m.parent = { id: v1.overlayId, depth: 3 }; });
    await refused(() => resolveChain(hopOf(open(c.file)), folderLookup([dir], readers)), 'Corrupt', /3 hops from its base, but its parent .* is 0/);
    const before = fs.readdirSync(store).length;
    await refused(() => createOverlay({ baseId: pair.baseId, ...pair.base, parent: { overlayId: v1.overlayId, depth: 4, ramFile: pair.launch.ramFile, diskLayer: pair.launch.diskLayer } },
      pair.launch, { outDir: store, compressor }), 'BadInput', /would be 5, over the cap of 4/);
    assert.equal(fs.readdirSync(store).length, before);
  });

  it('refused: a child applied without its chain (BadInput), nothing left behind', async () => {
    const leaf = open(child.path);
    const out = path.join(tmp, 'nochain');
    await refused(() => applyOverlay(leaf, leaf, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: out, compressor }), 'BadInput', /child of overlay .*synthesize it with its chain/);
    assert.ok(!fs.existsSync(out));
  });
});
