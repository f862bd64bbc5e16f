import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { copyRanges, dataExtents, rangesOutside } from '../../sandbox/qemu/sparseCopy';

describe('sparse copy leaving out chunks (synthesis base RAM copy)', () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sparse-copy-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const C = 4096;
  const marks = (n: number, set: number[]) => { const m = new Uint8Array(n); for (const i of set) m[i] = 1; return m; };

  it('rangesOutside: data extents minus the chunks left out, merged across touching extents, widened to chunks, cut at the file end', () => {
    // Extents [0, 4) and [4, 6) chunks touch: one range; chunk 2 left out splits it.
    assert.deepEqual(rangesOutside([{ start: 0, length: 4 * C }, { start: 4 * C, length: 2 * C }], marks(16, [2]), C, 16 * C),
      [{ start: 0, length: 2 * C }, { start: 3 * C, length: 3 * C }]);
    // Unsorted, overlapping once widened (a partial chunk at 10.5), the last chunk short (file of 12.5 chunks).
    const size = 12 * C + 2048;
    assert.deepEqual(rangesOutside([{ start: 10 * C + 2048, length: 2048 + C + 2048 }, { start: 8 * C, length: 3 * C }], marks(13, [9]), C, size),
      [{ start: 8 * C, length: C }, { start: 10 * C, length: size - 10 * C }]);
    // Everything left out, or no data: nothing to copy.
    assert.deepEqual(rangesOutside([{ start: 0, length: 3 * C }], marks(3, [0, 1, 2]), C, 3 * C), []);
    assert.deepEqual(rangesOutside([], marks(3, []), C, 3 * C), []);
    // A mark array shorter than the file (another overlay's RAM size): chunks past it are copied.
    assert.deepEqual(rangesOutside([{ start: 0, length: 4 * C }], marks(2, [1]), C, 4 * C), [{ start: 0, length: C }, { start: 2 * C, length: 2 * C }]);
  });

  it('rangesOutside (a run at a time) gives what a chunk-by-chunk walk gives, on random extents and marks', () => {
    // The plain definition: every chunk some extent touches, inside the file and not marked, in merged runs.
    const reference = (extents: Array<{ start: number; length: number }>, leaveOut: Uint8Array, fileSize: number) => {
      const chunks = Math.ceil(fileSize / C);
      const copy = new Uint8Array(chunks);
      for (const e of extents) for (let c = Math.floor(e.start / C); c < Math.min(chunks, Math.ceil((e.start + e.length) / C)); c++) if (leaveOut[c] !== 1) copy[c] = 1;
      const out: Array<{ start: number; length: number }> = [];
      for (let c = 0; c < chunks; c++) {
        if (!copy[c]) continue;
        let end = c;
        while (end < chunks && copy[end]) end++;
        out.push({ start: c * C, length: Math.min(end * C, fileSize) - c * C });
        c = end;
      }
      return out;
    };
    let seed = 12345;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
    for (let trial = 0; trial < 300; trial++) {
      const chunks = 1 + rnd(200);
      const fileSize = chunks * C - (rnd(3) === 0 ? rnd(C - 1) : 0);
      const extents = Array.from({ length: rnd(8) }, () => { const start = rnd(chunks * C); return { start, length: Math.min(fileSize - Math.min(start, fileSize), rnd(40 * C)) }; });
      const marks = new Uint8Array(rnd(4) === 0 ? rnd(chunks) : chunks); // sometimes shorter than the file
      for (let i = 0; i < marks.length; i++) marks[i] = rnd(3) === 0 ? 1 : 0;
      assert.deepEqual(rangesOutside(extents, marks, C, fileSize), reference(extents, marks, fileSize), `trial ${trial}`);
    }
  });

  it('copyRanges writes exactly the ranges (other bytes of the target untouched), in pieces; dataExtents sees a sparse file\'s data', async () => {
    const src = path.join(tmp, 'src'), dst = path.join(tmp, 'dst');
    const data = Buffer.alloc(64 * C);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(src, data);
    fs.writeFileSync(dst, Buffer.alloc(64 * C, 0xee));
    const ranges = [{ start: C, length: 5 * C }, { start: 20 * C, length: 30 * C + 100 }];
    await copyRanges(src, dst, ranges, 3 * C); // pieces smaller than the ranges
    const out = fs.readFileSync(dst);
    for (let i = 0; i < out.length; i++) {
      const inside = ranges.some((r) => i >= r.start && i < r.start + r.length);
      if (out[i] !== (inside ? data[i] : 0xee)) assert.fail(`byte ${i} (${inside ? 'copied' : 'untouched'}) is ${out[i]}`);
    }
    // A source shorter than a range: refused, not a silent short copy.
    await assert.rejects(copyRanges(src, dst, [{ start: 60 * C, length: 8 * C }]), /ended at byte/);
    // A sparse file: a hole in the middle is not a data extent.
    const sparse = path.join(tmp, 'sparse');
    const fd = fs.openSync(sparse, 'w');
    fs.writeSync(fd, data, 0, 16 * C, 0);
    fs.writeSync(fd, data, 0, 16 * C, 1024 * C);
    fs.closeSync(fd);
    const ext = await dataExtents(sparse);
    assert.ok(ext.length >= 2 && ext.every((e) => e.start + e.length <= 1040 * C), JSON.stringify(ext));
    assert.ok(!ext.some((e) => e.start < 512 * C && e.start + e.length > 512 * C), `the hole at chunk 512 is no data: ${JSON.stringify(ext)}`);
  });
});
