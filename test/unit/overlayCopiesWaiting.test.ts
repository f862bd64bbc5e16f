// Copies of chunks stored later in the manifest wait until their chunk is stored. With more waiting
// copies than a call can take as arguments (~126k), a spread of the waiting list threw RangeError
// (review 10, finding 6): this overlay is valid and must apply.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compress } from 'zstd-napi';
import { createOverlay, OverlayReader, SegmentCompressor, canonicalJson, applyOverlay } from '../../sandbox/overlay';
import type { OverlayManifest } from '../../sandbox/overlay';
import { emptyBreakdown, encodeContainerHeader, encodeSegment, Encoding, segmentName, ENCODING_NAMES } from '../../sandbox/overlay/format';
import { makePair, PAGE } from '../unit/helpers/generatedImages';

const RAM_PAGES = 150 * 1024, DISK_CHUNKS = 2048, PENDING = 140000;

describe('overlay apply: many copies waiting', function () {
  this.timeout(600000);
  it(`${PENDING} copies waiting for a disk chunk stored after them`, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'copies-waiting-'));
    const compressor = new SegmentCompressor(1);
    try {
      const pair = makePair(path.join(tmp, 'pair'));
      const src = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'ov'), compressor })).path;
      const r = OverlayReader.open(src);
      const m = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
      const file = fs.readFileSync(src);
      const segs = new Map<string, Buffer>();
      for (const s of r.segmentRanges()) segs.set(s.digest, file.subarray(s.offset, s.offset + s.length));
      r.close();
      // Big sparse base files of the sizes the crafted manifest names.
      const baseRam = path.join(tmp, 'big-ram.raw'), baseDisk = path.join(tmp, 'big-disk.raw');
      fs.writeFileSync(baseRam, ''); fs.truncateSync(baseRam, RAM_PAGES * PAGE);
      fs.writeFileSync(baseDisk, ''); fs.truncateSync(baseDisk, DISK_CHUNKS * PAGE);
      m.base.ramSize = m.ram.size = m.vmConfig.ramBytes = RAM_PAGES * PAGE;
      m.base.diskSize = m.disk.size = DISK_CHUNKS * PAGE;
      const bd = { ram: emptyBreakdown(), disk: emptyBreakdown() };
      const entries: OverlayManifest['segments'] = [];
      const add = (target: 'ram' | 'disk', first: number, records: Parameters<typeof encodeSegment>[0], payloads: Buffer[]) => {
        const b = bd[target];
        b.chunks += records.length; b.segments++;
        for (const rec of records) { const e = ENCODING_NAMES[rec.encoding as number]; b.encodings[e]++; if (e === 'self') b.selfFrom[rec.refTarget]++; if (e === 'raw' || e === 'xor') b.payloadBytes += PAGE; }
        const raw = encodeSegment(records, payloads);
        const c = Buffer.from(compress(raw, { compressionLevel: 1 }));
        const digest = segmentName(c);
        segs.set(digest, c);
        b.segmentRawBytes += raw.length;
        entries.push({ digest, kind: 'chunks', target, size: c.length, rawSize: raw.length, rawDigest: segmentName(raw), records: records.length, chunks: [[first, records.length]] } as never);
      };
      // RAM pages 0..PENDING: page 0 copies disk chunk 0, the others disk chunk 1 (both stored in later disk segments).
      for (let f = 0; f <= PENDING; f += 16384) {
        const n = Math.min(16384, PENDING + 1 - f);
        add('ram', f, Array.from({ length: n }, (_, k) => ({ encoding: Encoding.Self, index: f + k, ref: f + k === 0 ? 0 : 1, refTarget: 'disk' as const })), []);
      }
      add('disk', 0, [{ encoding: Encoding.Raw, index: 0, ref: 0, refTarget: 'disk' }], [Buffer.alloc(PAGE, 0x11)]);
      add('disk', 1, [{ encoding: Encoding.Raw, index: 1, ref: 0, refTarget: 'disk' }], [Buffer.alloc(PAGE, 0x22)]);
      m.segments = [...entries, ...m.segments.filter((s) => s.kind === 'device-state')];
      m.breakdown.ram = bd.ram; m.breakdown.disk = bd.disk;
      for (const t of ['ram', 'disk'] as const) m.breakdown[t].compressedBytes = m.segments.filter((s) => s.kind === 'chunks' && s.target === t).reduce((n, s) => n + s.size, 0);
      const mb = Buffer.from(canonicalJson(m));
      const crafted = path.join(tmp, 'crafted.overlay');
      fs.writeFileSync(crafted, Buffer.concat([encodeContainerHeader(mb), mb, ...m.segments.map((s) => segs.get(s.digest)!)]));
      const run = async (label: string, fn: typeof applyOverlay) => {
        const rr = OverlayReader.open(crafted);
        try {
          const res = await fn(rr, rr, { baseId: m.baseId, ramFile: baseRam, diskFile: baseDisk }, { outDir: path.join(tmp, `out-${label}`), compressor, parallel: 1 });
          const fd = fs.openSync(res.ramFile, 'r'); const b = Buffer.alloc(PAGE);
          fs.readSync(fd, b, 0, PAGE, 0); const first = b[0];
          fs.readSync(fd, b, 0, PAGE, 5 * PAGE); fs.closeSync(fd);
          return `ok (page 0 = 0x${first.toString(16)}, page 5 = 0x${b[0].toString(16)})`;
        } catch (e) { return `FAILED: ${(e as Error).constructor.name}: ${(e as Error).message} code=${(e as { code?: string }).code}`; } finally { rr.close(); }
      };
      assert.equal(await run('main', applyOverlay), 'ok (page 0 = 0x11, page 5 = 0x22)');
    } finally {
      await compressor.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
