/**
 * The source's copy of the base RAM (ShadowPageTracker.load) read with the base's page digests:
 * only the runs that are not zero pages are read, and the copy is byte for byte the file.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { dataRuns, ShadowPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { prng } from './helpers/generatedImages';

const PAGE = 4096;
const digestsOf = (b: Buffer) => Buffer.concat(Array.from({ length: b.length / PAGE }, (_, i) => createHash('sha256').update(b.subarray(i * PAGE, (i + 1) * PAGE)).digest()));

describe('handoff shadow copy of the base RAM: only data runs read', () => {
  it('runs skip zero pages (gaps of 64 pages or less read through); no digests: the whole image', () => {
    const b = Buffer.alloc(1024 * PAGE);
    prng(1, 10 * PAGE).copy(b, 0);          // 0-9
    prng(2, PAGE).copy(b, 50 * PAGE);       // 50: gap 40 pages -> joined
    prng(3, 5 * PAGE).copy(b, 500 * PAGE);  // 500-504: gap > 64 -> own run
    prng(4, PAGE).copy(b, 1023 * PAGE);     // last page
    assert.deepEqual(dataRuns(b.length, digestsOf(b)), [[0, 51 * PAGE], [500 * PAGE, 505 * PAGE], [1023 * PAGE, 1024 * PAGE]]);
    assert.deepEqual(dataRuns(b.length), [[0, b.length]]);
    assert.deepEqual(dataRuns(b.length, digestsOf(Buffer.alloc(b.length))), [], 'all zero: nothing read');
    // Digests shorter than the image (never for a base's own list): the rest is read as is.
    assert.deepEqual(dataRuns(b.length, digestsOf(b).subarray(0, 600 * 32)), [[0, 51 * PAGE], [500 * PAGE, 505 * PAGE], [600 * PAGE, 1024 * PAGE]]);
  });

  it('loaded with the digests, the copy equals the file: a compare against the file itself finds nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shadow-'));
    try {
      const b = Buffer.alloc(3000 * PAGE);
      for (let i = 0; i < 3000; i += 7) prng(i + 1, PAGE).copy(b, i * PAGE);
      prng(99, 900 * PAGE).copy(b, 1500 * PAGE);
      const file = path.join(dir, 'ram.raw');
      fs.writeFileSync(file, b);
      const t = await ShadowPageTracker.load(file, 3000, { digests: digestsOf(b) });
      try {
        assert.equal(await t.scanFile(file, async () => undefined), 0);
        const page = Buffer.alloc(PAGE);
        for (const i of [0, 7, 1499, 1500, 2399, 2999]) assert.ok(t.page(i, page).equals(b.subarray(i * PAGE, (i + 1) * PAGE)), `page ${i}`);
      } finally { await t.close(); }
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
});
