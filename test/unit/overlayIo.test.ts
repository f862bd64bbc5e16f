import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RunWriter } from '../../sandbox/overlay/runWriter';
import { runLengths, SpanReader } from '../../sandbox/overlay/spanReader';
import { PAGE, prng } from './helpers/generatedImages';

describe('overlay I/O in runs: SpanReader and RunWriter', () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-io-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('SpanReader: chunks as in the file, read a span at a time (re-read only when left), nothing past the end', () => {
    const data = prng(21, 40 * PAGE + 100); // a short tail: its last chunk is not whole
    const file = path.join(tmp, 'span.bin');
    fs.writeFileSync(file, data);
    const fd = fs.openSync(file, 'r');
    try {
      const r = new SpanReader(fd, data.length, file, 8);
      assert.ok(r.chunk(0)!.equals(data.subarray(0, PAGE)));
      // The file changes under the reader: chunks 1..7 come from the span read with chunk 0, 8 is read anew.
      const changed = prng(22, data.length);
      fs.writeFileSync(file, changed);
      for (const c of [1, 7]) assert.ok(r.chunk(c * PAGE)!.equals(data.subarray(c * PAGE, (c + 1) * PAGE)), `held chunk ${c}`);
      for (const c of [8, 20, 3, 39]) assert.ok(r.chunk(c * PAGE)!.equals(changed.subarray(c * PAGE, (c + 1) * PAGE)), `chunk ${c}`);
      assert.equal(r.chunk(40 * PAGE), undefined);
      // A span of 2 from chunk 5: 6 is held, 7 is not.
      assert.ok(r.chunk(5 * PAGE, 2)!.equals(changed.subarray(5 * PAGE, 6 * PAGE)));
      fs.writeFileSync(file, data);
      assert.ok(r.chunk(6 * PAGE)!.equals(changed.subarray(6 * PAGE, 7 * PAGE)));
      assert.ok(r.chunk(7 * PAGE)!.equals(data.subarray(7 * PAGE, 8 * PAGE)));
      // forget(): nothing held is served afterwards (chunk 8 was held from the read at 7), and a new size counts.
      fs.writeFileSync(file, Buffer.concat([changed, prng(23, 8 * PAGE)]));
      r.forget();
      assert.ok(r.chunk(8 * PAGE)!.equals(changed.subarray(8 * PAGE, 9 * PAGE)));
      assert.equal(r.chunk(40 * PAGE), undefined, 'the old size still bounds the reads');
      r.forget(data.length + 8 * PAGE);
      assert.ok(r.chunk(40 * PAGE)!.equals(Buffer.concat([changed, prng(23, 8 * PAGE)]).subarray(40 * PAGE, 41 * PAGE)));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('runLengths: the row of chunks the next reads of the same file continue, capped; other reads (NaN) skipped', () => {
    const P = PAGE, N = NaN;
    // 10, 11, 12 (a NaN between 11 and 12 is another file's read), then 5, then 6, 7 after a repeat of 7.
    const runs = runLengths([10 * P, 11 * P, N, 12 * P, 5 * P, 6 * P, 7 * P, 7 * P, N], 256);
    assert.deepEqual([...runs], [3, 2, 0, 1, 3, 2, 1, 1, 0]);
    assert.deepEqual([...runLengths([0, P, 2 * P, 3 * P, 4 * P], 2)], [2, 2, 2, 2, 1]);
    assert.deepEqual([...runLengths([], 8)], []);
    // Read as told, a row reads exactly its chunks: nothing more is held than asked for.
    const data = prng(23, 16 * PAGE);
    const file = path.join(tmp, 'rows.bin');
    fs.writeFileSync(file, data);
    const fd = fs.openSync(file, 'r');
    try {
      const r = new SpanReader(fd, data.length, file, 8);
      assert.ok(r.chunk(10 * P, runs[0])!.equals(data.subarray(10 * P, 11 * P)));
      fs.writeFileSync(file, prng(24, 16 * PAGE));
      assert.ok(r.chunk(12 * P, runs[3])!.equals(data.subarray(12 * P, 13 * P)), 'chunk 12 held from the row read');
      assert.ok(!r.chunk(13 * P)!.equals(data.subarray(13 * P, 14 * P)), 'chunk 13 was not read with the row');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('RunWriter: runs, gaps and reused buffers (copied) land where they belong; nothing is written before flush', () => {
    const file = path.join(tmp, 'runs.bin');
    fs.writeFileSync(file, Buffer.alloc(64 * PAGE, 0xee));
    const expected = Buffer.alloc(64 * PAGE, 0xee);
    const fd = fs.openSync(file, 'r+');
    const w = new RunWriter(fd, 4);
    const scratch = Buffer.alloc(PAGE);
    // 0..9 (runs of at most 4), a gap, 20 and 21 from one reused buffer, 30 out of order before 12.
    const plan: Array<[number, boolean]> = [[0, false], [1, true], [2, false], [3, true], [4, true], [5, true], [6, true], [7, true], [8, false], [9, false], [20, true], [21, true], [30, false], [12, true]];
    for (const [c, copy] of plan) {
      const d = prng(100 + c, PAGE);
      if (copy) { d.copy(scratch); w.write(c * PAGE, scratch, true); scratch.fill(0x11); } else w.write(c * PAGE, d, false);
      d.copy(expected, c * PAGE);
    }
    assert.ok(fs.readFileSync(file).subarray(12 * PAGE, 13 * PAGE).equals(Buffer.alloc(PAGE, 0xee)), 'the last run is still queued');
    w.flush();
    fs.closeSync(fd);
    assert.ok(fs.readFileSync(file).equals(expected));
  });
});
