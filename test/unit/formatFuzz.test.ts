/**
 * Seeded fuzz of the two formats a cloudlet reads from others: overlay files (container header,
 * manifest, segments) through `overlay verify` and apply, and handoff rounds through the
 * destination's round parser and applier. Mutations: bit flips, truncation, swapped segments, huge
 * lengths, manifest/header fields replaced by hostile values, runs stretched past the image. Each
 * case must end as a refusal naming what is wrong (a CloudletError, never a TypeError or a crash) or
 * as a success whose output is exactly right; a refused apply leaves no folder, and nothing is
 * written outside the case's folder. FUZZ_SEED=<seed> replays a run (the seed is printed).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CloudletError } from '../../sandbox/common/errors';
import { applyOverlay, createOverlay, OverlayReader, verifyOverlay, SegmentCompressor, canonicalJson } from '../../sandbox/overlay';
import { CHUNK_SIZE, CONTAINER_HEADER_SIZE, encodeContainerHeader, type OverlayManifest } from '../../sandbox/overlay/format';
import { RoundApplier } from '../../sandbox/handoff/roundApplier';
import { openRound, type RoundLimits } from '../../sandbox/handoff/roundReader';
import { fuzzSeed, Random } from '../fuzz/random';
import { makePair, type GeneratedPair } from './helpers/generatedImages';
import { encodeRounds, pieces } from './helpers/handoffRounds';

const OVERLAY_CASES = 120;
const ROUND_CASES = 160;

/** Values that hurt parsers before: put in place of a field. */
const HOSTILE: unknown[] = [null, true, -1, 1.5, 2 ** 32, 2 ** 53 + 1, 4000000000, 1e308, '', '1', '../../etc/passwd', 'x'.repeat(3000),
  [], [[0, 4000000000]], [[-1, 1]], [[0, 0]], [[5, 1], [1, 1]], {}, { __proto__: { admin: true } }, [null]];

/** The refusal must be ours and say something; what a crash would say must not appear. */
function assertRefusal(e: unknown, what: string): void {
  assert.ok(e instanceof CloudletError, `${what}: not a CloudletError but ${(e as Error)?.stack ?? String(e)}`);
  assert.ok(['BadInput', 'Corrupt', 'Mismatch'].includes(e.code), `${what}: code ${e.code}: ${e.message}`);
  assert.ok(e.message.length > 10, `${what}: empty message`);
  assert.doesNotMatch(e.message, /Cannot read prop|is not a function|is not iterable|Maximum call stack|Invalid array length|undefined \(reading/, what);
}

/** Every path in a folder tree (to prove nothing else was written). */
function listTree(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...listTree(p));
  }
  return out.sort();
}

/** A random JSON path inside `v` (objects and arrays), as keys. */
function randomPath(r: Random, v: unknown): Array<string | number> {
  const p: Array<string | number> = [];
  let cur = v;
  while (cur && typeof cur === 'object' && (p.length === 0 || r.chance(0.7))) {
    const keys: Array<string | number> = Array.isArray(cur) ? cur.map((_, i) => i) : Object.keys(cur);
    if (!keys.length) break;
    const k = r.pick(keys);
    p.push(k);
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return p;
}

/** Replaces, deletes or adds a field somewhere in a JSON document (in place). */
function mutateJson(r: Random, doc: Record<string, unknown>): string {
  const p = randomPath(r, doc);
  if (!p.length) return 'nothing';
  const parent = p.slice(0, -1).reduce<any>((o, k) => o[k], doc);
  const last = p[p.length - 1];
  const how = r.int(0, 2);
  if (how === 0 && !Array.isArray(parent)) { delete parent[last]; return `deleted ${p.join('.')}`; }
  if (how === 1 && !Array.isArray(parent)) { parent[`x${r.int(0, 9)}`] = r.pick(HOSTILE); return `added a field beside ${p.join('.')}`; }
  const v = r.pick(HOSTILE);
  parent[last] = v;
  return `${p.join('.')} = ${JSON.stringify(v)?.slice(0, 40)}`;
}

describe('fuzz: overlay files and handoff rounds (seeded)', function () {
  this.timeout(120_000);
  const seed = fuzzSeed();
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;

  before(async () => {
    console.log(`      format fuzz seed ${seed} (FUZZ_SEED=${seed} replays it)`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'format-fuzz-'));
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
  });
  after(async () => {
    await compressor?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it(`${OVERLAY_CASES} mutated overlay files: verify and apply refuse naming the fault, or give the exact launch files`, async () => {
    const made = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays'), compressor });
    const original = fs.readFileSync(made.path);
    const reader = OverlayReader.open(made.path);
    const manifestLen = reader.manifestBytes.length;
    const ranges = reader.segmentRanges();
    reader.close();
    const segStart = CONTAINER_HEADER_SIZE + manifestLen;
    const r = new Random(seed);
    const work = path.join(tmp, 'overlay-cases');
    fs.mkdirSync(work);
    const outsideBefore = listTree(tmp).filter((p) => !p.startsWith(work));
    let refused = 0, accepted = 0;
    for (let i = 0; i < OVERLAY_CASES; i++) {
      const b = Buffer.from(original);
      let what: string;
      let file: Buffer = b;
      switch (r.int(0, 7)) {
        case 0: { const at = r.int(0, CONTAINER_HEADER_SIZE - 1); b[at] ^= 1 << r.int(0, 7); what = `header bit flip at ${at}`; break; }
        case 1: { const at = r.int(CONTAINER_HEADER_SIZE, segStart - 1); b[at] ^= 1 << r.int(0, 7); what = `manifest bit flip at ${at}`; break; }
        case 2: { const at = r.int(segStart, b.length - 1); b[at] ^= 1 << r.int(0, 7); what = `segment bit flip at ${at}`; break; }
        case 3: { const n = r.int(0, b.length - 1); file = b.subarray(0, n); what = `truncated to ${n} bytes`; break; }
        case 4: {
          const [x, y] = [r.pick(ranges), r.pick(ranges)];
          const parts = ranges.map((s) => b.subarray(s.offset, s.offset + s.length));
          parts[ranges.indexOf(x)] = b.subarray(y.offset, y.offset + y.length);
          parts[ranges.indexOf(y)] = b.subarray(x.offset, x.offset + x.length);
          file = Buffer.concat([b.subarray(0, segStart), ...parts]);
          what = `segments ${ranges.indexOf(x)} and ${ranges.indexOf(y)} swapped`;
          break;
        }
        case 5: { const v = r.pick([0, 0xffffffff, 64 << 20, (64 << 20) + 1, manifestLen + 1, manifestLen - 1, b.length]); b.writeUInt32BE(v >>> 0, 12); what = `manifest length ${v}`; break; }
        case 6: {
          const m = JSON.parse(b.subarray(CONTAINER_HEADER_SIZE, segStart).toString()) as Record<string, unknown>;
          what = `manifest ${mutateJson(r, m)}`;
          let mb: Buffer;
          try { mb = Buffer.from(canonicalJson(m)); } catch { mb = Buffer.from(JSON.stringify(m)); }
          file = Buffer.concat([encodeContainerHeader(mb), mb, b.subarray(segStart)]);
          break;
        }
        default: {
          // A huge run or size on one segment entry (what grew a destination to 1.9 GB).
          const m = JSON.parse(b.subarray(CONTAINER_HEADER_SIZE, segStart).toString()) as OverlayManifest;
          const s = r.pick(m.segments.filter((x) => x.kind === 'chunks'));
          const huge = r.pick([4000000000, 2 ** 32 - 1, 2 ** 31, 16384, 16385]);
          if (r.chance(0.5)) { s.chunks = [[0, huge]]; s.records = huge; } else s.size = huge;
          const mb = Buffer.from(canonicalJson(m));
          file = Buffer.concat([encodeContainerHeader(mb), mb, b.subarray(segStart)]);
          what = `segment ${s.digest.slice(7, 15)} ${JSON.stringify(s.chunks)} size ${s.size}`;
        }
      }
      const f = path.join(work, `case-${i}.overlay`);
      fs.writeFileSync(f, file);
      const out = path.join(work, `case-${i}-launch`);
      const label = `seed ${seed} case ${i} (${what})`;
      let reader2: OverlayReader | undefined;
      try {
        reader2 = OverlayReader.open(f);
        await verifyOverlay(reader2, reader2, { compressor });
        const res = await applyOverlay(reader2, reader2, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: out, compressor });
        assert.ok(fs.readFileSync(res.ramFile).equals(pair.ram), `${label}: accepted, but the launch RAM differs`);
        assert.ok(fs.readFileSync(res.deviceState).equals(fs.readFileSync(pair.launch.deviceState)), `${label}: accepted, but the device state differs`);
        accepted++;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assertRefusal(e, label);
        assert.ok(!fs.existsSync(out), `${label}: a refused apply left ${out}`);
        refused++;
      } finally { reader2?.close(); }
      assert.deepEqual(fs.readdirSync(work).filter((n) => n.includes('.partial')), [], `${label}: a partial folder was left`);
      fs.rmSync(out, { recursive: true, force: true });
      fs.rmSync(f, { force: true });
    }
    assert.deepEqual(listTree(tmp).filter((p) => !p.startsWith(work)), outsideBefore, 'nothing written outside the cases\' folder');
    assert.ok(refused > OVERLAY_CASES / 2, `most mutations are refused (${refused} refused, ${accepted} accepted)`);
  });

  it(`${ROUND_CASES} mutated handoff rounds: the destination's parser and applier refuse naming the fault, or apply them exactly`, async () => {
    const rounds = await encodeRounds(pair, compressor);
    const limits: RoundLimits = { chunks: { ram: pair.ram.length / CHUNK_SIZE, disk: pair.disk.length / CHUNK_SIZE }, maxBytes: pair.ram.length + (256 << 20) };
    const r = new Random(seed ^ 0x5eed);
    const work = path.join(tmp, 'round-cases');
    fs.mkdirSync(work);
    const outsideBefore = listTree(tmp).filter((p) => !p.startsWith(work));
    const rss0 = process.memoryUsage().rss;
    let refused = 0;
    for (let i = 0; i < ROUND_CASES; i++) {
      const n = r.int(0, 1);
      const body = Buffer.from(rounds[n]);
      const hl = body.readUInt32BE(0);
      let what: string;
      let sent: Buffer = body;
      switch (r.int(0, 5)) {
        case 0: { const at = r.int(0, 3); body[at] ^= 1 << r.int(0, 7); what = `header length bit flip (byte ${at})`; break; }
        case 1: { const at = r.int(4, 4 + hl - 1); body[at] ^= 1 << r.int(0, 7); what = `header bit flip at ${at}`; break; }
        case 2: { const at = r.int(4 + hl, body.length - 1); body[at] ^= 1 << r.int(0, 7); what = `segment bit flip at ${at}`; break; }
        case 3: { const k = r.int(0, body.length - 1); sent = body.subarray(0, k); what = `truncated to ${k}`; break; }
        default: {
          const h = JSON.parse(body.subarray(4, 4 + hl).toString()) as Record<string, unknown>;
          what = `header ${mutateJson(r, h)}`;
          const hb = Buffer.from(JSON.stringify(h) ?? '');
          const len = Buffer.alloc(4);
          len.writeUInt32BE(hb.length);
          sent = Buffer.concat([len, hb, body.subarray(4 + hl)]);
        }
      }
      const label = `seed ${seed ^ 0x5eed} case ${i} (round ${n}: ${what})`;
      const dir = path.join(work, `case-${i}`);
      // As a prepared launch: a copy of the base RAM made here (no `cp` process per case).
      fs.mkdirSync(dir);
      fs.copyFileSync(pair.base.ramFile, path.join(dir, 'ram.raw'));
      const a = await RoundApplier.create(dir, { ram: pair.base.ramFile, disk: pair.base.diskFile }, { ramFile: path.join(dir, 'ram.raw'), diskLayer: path.join(dir, 'disk.qcow2') });
      try {
        const rs = await openRound(pieces(sent, r.int(1, 8) * 4096), n, limits);
        await a.apply(rs.segments(), compressor);
        // Accepted: it must be what the source sent (a mutation that changed nothing, e.g. a key order).
        if (n === 0) assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), `${label}: accepted, but the RAM differs`);
        else assert.ok(fs.readFileSync(a.deviceState).equals(fs.readFileSync(pair.launch.deviceState)), `${label}: accepted, but the device state differs`);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assertRefusal(e, label);
        refused++;
      } finally {
        a.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    assert.deepEqual(listTree(tmp).filter((p) => !p.startsWith(work)), outsideBefore, 'nothing written outside the cases\' folder');
    assert.ok(refused > ROUND_CASES / 2, `most mutations are refused (${refused} of ${ROUND_CASES})`);
    assert.ok(process.memoryUsage().rss - rss0 < 256 << 20, `RSS grew by ${(process.memoryUsage().rss - rss0) >> 20} MiB`);
  });
});
