/**
 * In-place changes of a handoff destination's qcow2 layer (sandbox/handoff/layerPatcher.ts): on a
 * layer written by Qcow2Writer, overwrites, new chunks (same and new L2 tables, enough to need new
 * refcount blocks) and zeroed chunks read back exactly through qemu-img, and `qemu-img check`
 * finds no error or leak.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Qcow2Writer } from '../../sandbox/overlay/qcow2Writer';
import { LayerPatcher, LayoutNotHandled } from '../../sandbox/handoff/layerPatcher';

const has = (bin: string) => { try { execFileSync(bin, ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } };
const fill = (v: number) => Buffer.alloc(4096, v);

describe('handoff layer patcher (qcow2 changed in place)', function () {
  this.timeout(120_000);
  let dir: string;
  before(function () { if (!has('qemu-img')) this.skip(); });
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'patch-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('overwrites, appends new chunks (new L2 tables and refcount blocks), zeroes; qemu-img reads it back exactly and checks it clean', () => {
    const size = 64 << 20;
    const base = path.join(dir, 'base.raw');
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) b.fill((i / 4096) % 199 + 1, i, i + 4096);
    fs.writeFileSync(base, b);
    const layer = path.join(dir, 'layer.qcow2');
    const expected = Buffer.from(b);
    const put = (c: number, v: number | undefined) => { if (v === undefined) expected.fill(0, c * 4096, c * 4096 + 4096); else expected.fill(v, c * 4096, c * 4096 + 4096); };
    const w = Qcow2Writer.create(layer, { virtualSize: size, backingFile: base, chunks: [3, 10, 600, 601] });
    w.writeChunk(3, fill(0xa3)); put(3, 0xa3);
    w.writeChunk(10, fill(0xaa)); put(10, 0xaa);
    w.markZero(600); put(600, undefined);
    w.writeChunk(601, fill(0xa6)); put(601, 0xa6);
    w.finish();

    const p = new LayerPatcher(layer);
    try {
      p.put(3, fill(0xb3)); put(3, 0xb3);             // overwritten in its cluster
      p.put(11, fill(0xbb)); put(11, 0xbb);           // new, same L2 table
      p.put(10, undefined); put(10, undefined);       // zeroed (cluster kept)
      p.put(600, fill(0xb6)); put(600, 0xb6);         // was a zero chunk without cluster
      p.put(5000, fill(0xc5)); put(5000, 0xc5);       // new L2 table
      // Enough new clusters to need refcount blocks the writer did not make (2048 clusters each).
      for (let c = 8000; c < 12600; c++) { p.put(c, fill(c % 97 + 100)); put(c, c % 97 + 100); }
      p.put(10, fill(0xcc)); put(10, 0xcc);           // data again into the kept cluster
    } finally { p.close(); }

    const check = execFileSync('qemu-img', ['check', '--output=json', '-f', 'qcow2', layer]).toString();
    const r = JSON.parse(check);
    assert.equal(r['check-errors'], 0, check);
    assert.equal(r['leaks'] ?? 0, 0, check);
    assert.equal(r['corruptions'] ?? 0, 0, check);
    const out = path.join(dir, 'out.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', layer, out]);
    const got = fs.readFileSync(out);
    assert.equal(got.length, size);
    for (let c = 0; c < size / 4096; c++) {
      if (!got.subarray(c * 4096, c * 4096 + 4096).equals(expected.subarray(c * 4096, c * 4096 + 4096))) assert.fail(`chunk ${c} differs`);
    }
  });

  it('refuses a layer it does not know (another cluster size): the caller rewrites the layer', () => {
    const layer = path.join(dir, 'l.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', layer, '64M']);
    assert.throws(() => new LayerPatcher(layer), (e: unknown) => e instanceof LayoutNotHandled && /cluster bits 16/.test(e.message)); // the caller rewrites the layer for this kind only
  });
});
