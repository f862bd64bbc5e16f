import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { Qcow2Reader } from '../../sandbox/overlay/qcow2Reader';
import { Qcow2Writer } from '../../sandbox/overlay/qcow2Writer';
import { makePair, PAGE, prng } from './helpers/generatedImages';

/** Chunks qemu-img says the top layer maps itself (data or zero), from `qemu-img map`. */
function qemuMappedChunks(file: string): number[] {
  const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', file]).toString()) as Array<{ start: number; length: number; depth: number; data: boolean; zero: boolean }>;
  const out = new Set<number>();
  for (const e of map) {
    if (e.depth !== 0) continue;
    for (let c = Math.floor(e.start / PAGE); c < Math.ceil((e.start + e.length) / PAGE); c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/** Chunks the top layer maps entirely as zeros without data (qcow2 zero clusters), from `qemu-img map`. */
function qemuZeroChunks(file: string): number[] {
  const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', file]).toString()) as Array<{ start: number; length: number; depth: number; data: boolean; zero: boolean }>;
  const zeroBytes = new Map<number, number>();
  for (const e of map) {
    if (e.depth !== 0 || e.data || !e.zero) continue;
    for (let c = Math.floor(e.start / PAGE); c < Math.ceil((e.start + e.length) / PAGE); c++) {
      zeroBytes.set(c, (zeroBytes.get(c) ?? 0) + Math.min(e.start + e.length, (c + 1) * PAGE) - Math.max(e.start, c * PAGE));
    }
  }
  return [...zeroBytes].filter(([, n]) => n === PAGE).map(([c]) => c).sort((a, b) => a - b);
}

describe('qcow2 reader and writer against qemu-img', function () {
  this.timeout(30000);
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-test-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const clusterSize of [512, 4096, 65536]) {
    it(`reader lists and reads what qemu wrote (cluster ${clusterSize})`, () => {
      const p = makePair(path.join(tmp, `p${clusterSize}`), { clusterSize });
      // Also a zero write over base data (zero flag) and data past a 2 MiB L2 boundary.
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -q -z ${300 * PAGE} ${4 * PAGE}`, p.launch.diskLayer]);
      p.disk.fill(0, 300 * PAGE, 304 * PAGE);
      const r = Qcow2Reader.open(p.launch.diskLayer);
      assert.equal(r.info.clusterSize, clusterSize);
      assert.equal(r.info.virtualSize, p.disk.length);
      assert.equal(r.info.backingFormat, 'raw');
      assert.equal(r.info.backingFile, p.base.diskFile);
      assert.deepEqual(r.allocatedChunks(), qemuMappedChunks(p.launch.diskLayer));
      const bfd = fs.openSync(p.base.diskFile, 'r');
      for (const c of r.allocatedChunks()) {
        assert.ok(r.readChunk(c, undefined, bfd).equals(p.disk.subarray(c * PAGE, (c + 1) * PAGE)), `chunk ${c}`);
      }
      fs.closeSync(bfd);
      // The scan's view: the same chunks, which of them are zero clusters, where the others' bytes are.
      const kinds = r.allocatedChunkKinds();
      assert.deepEqual([...kinds.chunks], r.allocatedChunks());
      const zeroChunks = [...kinds.chunks].filter((_, k) => kinds.zero[k] === 1);
      assert.deepEqual(zeroChunks, qemuZeroChunks(p.launch.diskLayer));
      assert.ok(zeroChunks.includes(300) && zeroChunks.includes(303) || clusterSize > PAGE, 'the zero write is seen as zero clusters');
      const layerBytes = fs.readFileSync(p.launch.diskLayer);
      let direct = 0;
      kinds.chunks.forEach((c, k) => {
        if (kinds.host[k] < 0) return;
        direct++;
        assert.equal(kinds.zero[k], 0);
        assert.ok(layerBytes.subarray(kinds.host[k], kinds.host[k] + PAGE).equals(p.disk.subarray(c * PAGE, (c + 1) * PAGE)), `chunk ${c} at host ${kinds.host[k]}`);
      });
      assert.ok(clusterSize < PAGE ? direct === 0 : direct > 0, `${direct} chunks read straight from the layer`);
      r.close();
    });
  }

  it('reader refuses compressed clusters, extended L2 and non-qcow2 files with clear messages', () => {
    const base = path.join(tmp, 'b.raw');
    fs.writeFileSync(base, Buffer.alloc(1 << 20));
    const comp = path.join(tmp, 'comp.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', comp, '1M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -q -c -P 0x11 0 4096', comp]);
    assert.throws(() => Qcow2Reader.open(comp), (e: unknown) => isCloudletError(e, 'BadInput') && /compressed clusters are not supported/.test(e.message));
    const ext = path.join(tmp, 'ext.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', ext, '1M']);
    assert.throws(() => Qcow2Reader.open(ext), /extended L2 entries/);
    assert.throws(() => Qcow2Reader.open(base), /not a qcow2 image/);
  });

  it('writer: qemu-img check is clean, contents match, zero chunks hide the backing file', () => {
    const size = 24 << 20; // several L2 tables
    const base = prng(11, size);
    const baseFile = path.join(tmp, 'wbase.raw');
    fs.writeFileSync(baseFile, base);
    const chunks = [0, 1, 2, 511, 512, 1023, 1024, 3000, 4000, 6143];
    const expected = Buffer.from(base);
    const file = path.join(tmp, 'w.qcow2');
    const w = Qcow2Writer.create(file, { virtualSize: size, backingFile: baseFile, chunks });
    // Written out of order, as parallel segment decoding does.
    for (const c of [...chunks].reverse()) {
      if (c % 2 === 0 && c !== 0) { w.markZero(c); expected.fill(0, c * PAGE, (c + 1) * PAGE); continue; }
      const d = prng(c + 100, PAGE);
      w.writeChunk(c, d);
      d.copy(expected, c * PAGE);
    }
    w.finish();
    fs.writeFileSync(path.join(tmp, 'w-expected.raw'), expected);
    assert.match(execFileSync('qemu-img', ['check', file]).toString(), /No errors were found on the image/);
    execFileSync('qemu-img', ['compare', '-q', file, path.join(tmp, 'w-expected.raw')]);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', file]).toString());
    assert.equal(info['cluster-size'], 4096);
    assert.equal(info['backing-filename'], baseFile);
    assert.equal(info['backing-filename-format'], 'raw');
    assert.equal(info['format-specific'].data.compat, '1.1');
    // And our reader reads our writer.
    const r = Qcow2Reader.open(file);
    assert.deepEqual(r.allocatedChunks(), chunks);
    r.close();
  });

  it('writer over an empty layer qemu-img made (a prepared launch\'s, held open by its QEMU): same inode, same bytes, check clean; refused when that layer reaches the data area', () => {
    const size = 24 << 20;
    const base = prng(12, size);
    const baseFile = path.join(tmp, 'rbase.raw');
    fs.writeFileSync(baseFile, base);
    const file = path.join(tmp, 'r.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${baseFile},backing_fmt=raw`, file]);
    const ino = fs.statSync(file).ino;
    const chunks = [3, 4, 5, 700, 701, 5000];
    const expected = Buffer.from(base);
    const w = Qcow2Writer.reuse(file, { virtualSize: size, backingFile: baseFile, chunks });
    assert.ok(w, 'an empty layer lies before the data area');
    for (const c of chunks) {
      if (c === 700) { w.markZero(c); expected.fill(0, c * PAGE, (c + 1) * PAGE); continue; }
      const d = prng(c + 200, PAGE);
      w.writeChunk(c, d);
      d.copy(expected, c * PAGE);
    }
    w.finish({ sync: false });
    assert.equal(fs.statSync(file).ino, ino, 'rewritten in place');
    fs.writeFileSync(path.join(tmp, 'r-expected.raw'), expected);
    assert.match(execFileSync('qemu-img', ['check', file]).toString(), /No errors were found on the image/);
    execFileSync('qemu-img', ['compare', '-q', file, path.join(tmp, 'r-expected.raw')]);
    // A file longer than the metadata area (here: the finished layer itself, its data clusters) is not reused.
    assert.equal(Qcow2Writer.reuse(file, { virtualSize: size, backingFile: baseFile, chunks: [1] }), undefined);
  });

  it('writer refuses a chunk outside its plan and an unfinished layer', () => {
    const file = path.join(tmp, 'w2.qcow2');
    const w = Qcow2Writer.create(file, { virtualSize: 1 << 20, backingFile: '/nonexistent/base.raw', chunks: [3, 4] });
    assert.throws(() => w.writeChunk(5, Buffer.alloc(PAGE)), /not in the planned chunk list/);
    w.writeChunk(3, Buffer.alloc(PAGE, 1));
    assert.throws(() => w.finish(), /disk chunk 4 was never written/);
    w.close();
    assert.throws(() => Qcow2Writer.create(file, { virtualSize: 1 << 20, backingFile: 'x', chunks: [300] }), /outside a 1048576-byte disk/);
  });
});
