/**
 * Why a v2 overlay re-uploads what it re-uploads, and what another segment layout would do.
 * Reads two overlays of the same base, decodes every chunk segment, and:
 *   - counts the chunks whose record really differs (encoding, ref or payload bytes) per image;
 *   - re-cuts both overlays' records into segments by a layout rule, compresses them as the writer
 *     does (zstd, same level), and sums the bytes of v2's segments that v1 lacks (what publish of v2
 *     would upload). Rules:
 *       count   the writer's rule (a segment closes at 256 payload chunks or 16384 records); as a
 *               check, its segment digests must equal the real overlays' ones
 *       cdc     content-defined: a segment closes after a payload record whose chunk index hashes to
 *               0 mod 256, with at least 64 and at most 1024 payload chunks (16384 records at most):
 *               about 1 MiB of payload on average, like the writer's rule. A boundary depends only on
 *               the chunk index, so a chunk added to or removed from the change set moves no boundary
 *               outside its own segment (unless it trips min/max).
 *       cdc64   the same with 64 (16..256) payload chunks: about 256 KiB segments, 4x the layers.
 * Analysis only: the overlay format is unchanged. Run alone: node --import tsx bench/lib/segmentLayout.ts V1 V2
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import {
  CHUNK_SIZE, ChunkRecord, decodeSegment, encodeSegment, hasPayload, SEGMENT_MAX_RECORDS, SEGMENT_TARGET_BYTES, Target,
  chunkIndexHash, endsSegment,
} from '../../sandbox/overlay/format';
import { OverlayReader } from '../../sandbox/overlay/overlayReader';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';

interface Rec { r: ChunkRecord; payload?: Buffer }
type Rule = (payloadCount: number, records: number, last: ChunkRecord, target: Target) => boolean;

const countRule: Rule = (p, n) => p * CHUNK_SIZE >= SEGMENT_TARGET_BYTES || n >= SEGMENT_MAX_RECORDS;

const cdcRule = (avg: number): Rule => (p, n, last, target) =>
  n >= SEGMENT_MAX_RECORDS || p >= 4 * avg || (p >= avg / 4 && hasPayload(last.encoding) && chunkIndexHash(target, last.index) % avg === 0);
// `count` is the fixed-count cut the writer used before; `cdc` is the writer's rule now (endsSegment);
// `cdc64` the same idea with 4x smaller segments.
const writerRule: Rule = (p, n, last, target) => endsSegment(target, last, p, n);
const RULES = { count: countRule, cdc: writerRule, cdc64: cdcRule(64) } as const;
type RuleName = keyof typeof RULES;

async function records(file: string, zstd: SegmentCompressor): Promise<{ level: number; byTarget: Record<Target, Rec[]>; digests: Set<string> }> {
  const o = OverlayReader.open(file);
  try {
    const byTarget: Record<Target, Rec[]> = { ram: [], disk: [] };
    for (const s of o.manifest.segments) {
      if (s.kind !== 'chunks') continue;
      const raw = await zstd.decompress(await o.readVerifiedSegment(s.digest));
      const d = decodeSegment(raw, s.digest);
      d.records.forEach((r, i) => byTarget[s.target!].push({ r, payload: d.payloadOffsets[i] >= 0 ? raw.subarray(d.payloadOffsets[i], d.payloadOffsets[i] + CHUNK_SIZE) : undefined }));
    }
    return { level: o.manifest.compression.level, byTarget, digests: new Set(o.manifest.segments.map((s) => s.digest)) };
  } finally {
    o.close();
  }
}

function key(x: Rec): string {
  return `${x.r.encoding}/${x.r.refTarget}/${x.r.ref}/${x.payload ? createHash('sha256').update(x.payload).digest('hex') : ''}`;
}

async function cut(recs: Rec[], target: Target, rule: Rule, level: number, zstd: SegmentCompressor): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cur: Rec[] = [];
  let p = 0;
  const flush = async () => {
    if (!cur.length) return;
    const c = await zstd.compress(encodeSegment(cur.map((x) => x.r), cur.filter((x) => x.payload).map((x) => x.payload!)), level);
    out.set(c.digest, c.data.length);
    cur = []; p = 0;
  };
  const pending: Promise<void>[] = [];
  for (const x of recs) {
    cur.push(x);
    if (x.payload) p++;
    if (rule(p, cur.length, x.r, target)) {
      const seg = cur; cur = []; p = 0;
      pending.push((async () => {
        const c = await zstd.compress(encodeSegment(seg.map((y) => y.r), seg.filter((y) => y.payload).map((y) => y.payload!)), level);
        out.set(c.digest, c.data.length);
      })());
    }
  }
  await flush();
  await Promise.all(pending);
  return out;
}

export interface LayoutFigures {
  segments_v1: number; segments_v2: number; changed_segments_v2: number;
  bytes_v1: number; bytes_v2: number; changed_bytes_v2: number;
}

export interface LayoutAnalysis {
  /** differing: v2 records unlike v1's at the same index (plus v1 indices v2 lacks); deltaBytes: those
   *  records alone, cut by the writer's rule and compressed (what a v2 stored as a delta on v1 would hold). */
  changedChunks: Record<Target, { v1: number; v2: number; differing: number; differingPayloadBytes: number; deltaBytes: number }>;
  /** The count rule re-cut here gives exactly the real overlays' segment digests. */
  writerRuleReproduced: boolean;
  layouts: Record<RuleName, Record<Target, LayoutFigures>>;
}

export async function analyzeLayouts(v1: string, v2: string): Promise<LayoutAnalysis> {
  const zstd = new SegmentCompressor();
  try {
    const a = await records(v1, zstd);
    const b = await records(v2, zstd);
    const changedChunks = {} as LayoutAnalysis['changedChunks'];
    const layouts = { count: {}, cdc: {}, cdc64: {} } as LayoutAnalysis['layouts'];
    let reproduced = true;
    for (const t of ['ram', 'disk'] as Target[]) {
      const ka = new Map(a.byTarget[t].map((x) => [x.r.index, key(x)]));
      let differing = 0, differingPayloadBytes = 0;
      const delta: Rec[] = [];
      for (const x of b.byTarget[t]) if (ka.get(x.r.index) !== key(x)) { differing++; delta.push(x); if (x.payload) differingPayloadBytes += CHUNK_SIZE; }
      const kb = new Set(b.byTarget[t].map((x) => x.r.index));
      for (const i of ka.keys()) if (!kb.has(i)) differing++;   // changed in v1, back to the base's bytes in v2
      const deltaBytes = [...(await cut(delta, t, countRule, b.level, zstd)).values()].reduce((n, x) => n + x, 0);
      changedChunks[t] = { v1: a.byTarget[t].length, v2: b.byTarget[t].length, differing, differingPayloadBytes, deltaBytes };
      for (const [name, rule] of Object.entries(RULES) as Array<[RuleName, Rule]>) {
        const sa = await cut(a.byTarget[t], t, rule, a.level, zstd);
        const sb = await cut(b.byTarget[t], t, rule, b.level, zstd);
        if (name === 'cdc') {
          for (const d of sa.keys()) if (!a.digests.has(d)) reproduced = false;
          for (const d of sb.keys()) if (!b.digests.has(d)) reproduced = false;
        }
        const changed = [...sb].filter(([d]) => !sa.has(d));
        layouts[name][t] = {
          segments_v1: sa.size, segments_v2: sb.size, changed_segments_v2: changed.length,
          bytes_v1: [...sa.values()].reduce((n, x) => n + x, 0), bytes_v2: [...sb.values()].reduce((n, x) => n + x, 0),
          changed_bytes_v2: changed.reduce((n, [, x]) => n + x, 0),
        };
      }
    }
    return { changedChunks, writerRuleReproduced: reproduced, layouts };
  } finally {
    await zstd.close();
  }
}

if (require.main === module) {
  const [v1, v2] = process.argv.slice(2);
  if (!v1 || !v2 || !fs.existsSync(v1) || !fs.existsSync(v2)) { process.stderr.write('usage: bench/lib/segmentLayout.ts V1.overlay V2.overlay\n'); process.exit(2); }
  analyzeLayouts(v1, v2).then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0); }, (e) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exit(1); });
}
