/**
 * The destination's round parser and applier on generated images (no QEMU): rounds made by the
 * source's own RoundEncoder land byte for byte; hostile headers (a run of 4e9 chunks, runs outside
 * the image or out of order, counts that do not add up, the device state in the wrong round, absurd
 * lengths) are refused naming what is wrong, before anything is expanded or a segment byte is read.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { CloudletError } from '../../sandbox/common/errors';
import { CHUNK_SIZE, type SegmentEntry } from '../../sandbox/overlay/format';
import { Qcow2Reader } from '../../sandbox/overlay/qcow2Reader';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import type { RoundHeader } from '../../sandbox/handoff/protocol';
import { RoundApplier } from '../../sandbox/handoff/roundApplier';
import { openRound, type RoundLimits } from '../../sandbox/handoff/roundReader';
import { makePair, PAGE, type GeneratedPair } from './helpers/generatedImages';
import { bodyOf, encodeRounds, pieces } from './helpers/handoffRounds';
import { InlineZstd } from '../../sandbox/handoff/inlineZstd';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('handoff rounds at the destination: parser and applier', function () {
  this.timeout(60_000);
  let tmp: string;
  let pair: GeneratedPair;
  let compressor: SegmentCompressor;
  let rounds: Buffer[];
  let limits: RoundLimits;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'handoff-round-'));
    pair = makePair(path.join(tmp, 'pair'));
    compressor = new SegmentCompressor(2);
    rounds = await encodeRounds(pair, compressor);
    limits = { chunks: { ram: pair.ram.length / CHUNK_SIZE, disk: pair.disk.length / CHUNK_SIZE }, maxBytes: pair.ram.length + (256 << 20) };
  });
  after(async () => {
    await compressor.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const refused = async (body: Readable, round: number, pattern: RegExp, l = limits) => {
    await assert.rejects(async () => {
      const rs = await openRound(body, round, l);
      for await (const _ of rs.segments()) { /* drain */ }
    }, (e: unknown) => {
      assert.ok(e instanceof CloudletError, `a CloudletError, got ${String(e)}`);
      assert.ok(['BadInput', 'Corrupt'].includes(e.code), e.code);
      assert.match(e.message, pattern);
      return true;
    });
  };
  const header = (segments: unknown[], o: Partial<RoundHeader> = {}) => ({ round: 0, final: false, segments, ...o });
  const chunkEntry = (chunks: unknown, records: unknown = 1, extra: Record<string, unknown> = {}) =>
    ({ digest: DIGEST, kind: 'chunks', target: 'ram', size: 10, rawSize: 100, records, chunks, ...extra });

  it('rounds made by the source\'s encoder, streamed in pieces, give the launch RAM and disk byte for byte', async () => {
    const a = await RoundApplier.create(path.join(tmp, 'apply'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      for (const [n, body] of rounds.entries()) {
        const rs = await openRound(pieces(body, 1000), n, limits);
        await a.apply(rs.segments(), compressor);
        assert.equal(rs.received, body.length);
      }
      assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), 'RAM');
      assert.ok(fs.readFileSync(a.deviceState).equals(fs.readFileSync(pair.launch.deviceState)), 'device state');
      const layer = Qcow2Reader.open(a.buildDiskLayer());
      const fd = fs.openSync(pair.base.diskFile, 'r');
      try {
        const buf = Buffer.alloc(CHUNK_SIZE);
        for (let i = 0; i < pair.disk.length / PAGE; i++) {
          layer.readChunk(i, buf, fd);
          assert.ok(buf.equals(pair.disk.subarray(i * PAGE, (i + 1) * PAGE)), `disk chunk ${i}`);
        }
      } finally { layer.close(); fs.closeSync(fd); }
    } finally { a.close(); }
  });

  it('rounds compressed in-thread (InlineZstd, the paused round) apply the same, decompressed in-thread or on workers', async () => {
    const inline = new InlineZstd();
    const inlineRounds = await encodeRounds(pair, inline);
    for (const [k, dec] of [['workers', compressor], ['in-thread', inline]] as const) {
      const a = await RoundApplier.create(path.join(tmp, `apply-inline-${k}`), { ram: pair.base.ramFile, disk: pair.base.diskFile });
      try {
        for (const [n, body] of inlineRounds.entries()) {
          const rs = await openRound(pieces(body, 1000), n, limits);
          await a.apply(rs.segments(), dec);
        }
        assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), `RAM (${k})`);
        assert.ok(fs.readFileSync(a.deviceState).equals(fs.readFileSync(pair.launch.deviceState)), `device state (${k})`);
      } finally { a.close(); }
    }
    // And the workers' rounds decompressed in-thread.
    const a = await RoundApplier.create(path.join(tmp, 'apply-inline-dec'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      for (const [n, body] of rounds.entries()) await a.apply((await openRound(pieces(body, 1000), n, limits)).segments(), inline);
      assert.ok(fs.readFileSync(a.ramFile).equals(pair.ram), 'RAM (workers -> in-thread)');
    } finally { a.close(); }
  });

  it('a run of 4,000,000,000 chunks is refused by the header check, not expanded (memory stays flat)', async () => {
    const rss = process.memoryUsage().rss;
    const t0 = Date.now();
    await refused(bodyOf(header([chunkEntry([[0, 4000000000]], 4000000000)])), 0, /round 0: .*(chunks|records).*over the limit of 16384/);
    await refused(bodyOf(header([chunkEntry([[0, 16384]], 16384)])), 0, /outside the ram image \(1024 chunks\)/);
    assert.ok(Date.now() - t0 < 2000, `refused in ${Date.now() - t0} ms`);
    assert.ok(process.memoryUsage().rss - rss < 64 << 20, `RSS grew by ${process.memoryUsage().rss - rss} bytes`);
  });

  it('headers that break the manifest\'s segment rules are refused naming the rule', async () => {
    await refused(bodyOf(header([chunkEntry([[10, 2], [5, 1]], 3)])), 0, /chunk 5 out of order or twice/);
    await refused(bodyOf(header([chunkEntry([[10, 2]], 3)])), 0, /lists 2 chunks but declares 3 records/);
    await refused(bodyOf(header([chunkEntry([[1020, 5]], 5)])), 0, /names ram chunks 1020..1024, outside the ram image/);
    await refused(bodyOf(header([chunkEntry([[1, 1]]), chunkEntry([[2, 1]])])), 0, /listed twice/);
    await refused(bodyOf(header([chunkEntry([[1, 1]], 1, { target: 'swap' })])), 0, /target must be one of/);
    await refused(bodyOf(header([chunkEntry([[1, 1]], 1, { size: 200 << 20 })])), 0, /size .* over the limit/);
    await refused(bodyOf(header([chunkEntry([[1, 1]], 1, { digest: 'sha256:../../etc' })])), 0, /digest .* not of the form/);
    await refused(bodyOf(header([chunkEntry([[1, 1]], 1, { evil: true })])), 0, /evil is not a known field/);
    await refused(bodyOf({ ...header([]), extra: 1 }), 0, /extra is not a known field/);
    await refused(bodyOf(header([], { round: 1 })), 0, /says round 1, the URL 0/);
    await refused(bodyOf(header([{ digest: DIGEST, kind: 'device-state', size: 10, rawSize: 10 }])), 0, /only the final round carries the device state/);
    await refused(bodyOf(header([], { final: true })), 0, /exactly one device-state segment, it has 0/);
    // finish in the same request only with the final round, and only as a boolean.
    await refused(bodyOf(header([], { finish: true })), 0, /only the final round may ask to finish/);
    await refused(bodyOf({ ...header([{ digest: DIGEST, kind: 'device-state', size: 10, rawSize: 10 }], { final: true }), finish: 'yes' }), 0, /finish must be a boolean/);
    await refused(bodyOf(header([chunkEntry([[1, 1]], 1, { size: 1 << 20 })])), 0, /add up to 1048576 bytes, over the limit/, { ...limits, maxBytes: 1000 });
    // state_after_base names the base state it continues (its SHA-256, compared with the destination's).
    const finalState = [{ digest: DIGEST, kind: 'device-state', size: 10, rawSize: 10 }];
    await refused(bodyOf(header(finalState, { final: true, state_after_base: true })), 0, /state_after_base needs base_state_sha256/);
    await refused(bodyOf(header(finalState, { final: true, state_after_base: true, base_state_sha256: 'abc' })), 0, /base_state_sha256 .*pattern|base_state_sha256/);
  });

  it('lengths and framing: absurd header length, not JSON, a body cut inside a segment or with bytes after the last', async () => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(0xffffffff);
    await refused(pieces(Buffer.concat([len, Buffer.from('{}')])), 0, /header length 4294967295 is outside/);
    await refused(pieces(Buffer.from([0, 0])), 0, /ended inside the 4-byte header length/);
    len.writeUInt32BE(5);
    await refused(pieces(Buffer.concat([len, Buffer.from('{oops')])), 0, /header is not JSON/);
    const body = rounds[0];
    await refused(pieces(body.subarray(0, body.length - 100)), 0, /ended inside segment sha256:/);
    await refused(pieces(Buffer.concat([body, Buffer.from('x')])), 0, /bytes after its last segment/);
  });

  it('the body is read as a stream: a header over the limit is refused before any segment byte is pulled', async () => {
    let pulled = 0;
    const seg = chunkEntry([[1, 1]], 1, { size: 80 << 20 });
    const h = Buffer.from(JSON.stringify(header([seg])));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(h.length);
    const endless = Readable.from((function* () {
      yield Buffer.concat([len, h]);
      for (;;) { pulled++; yield Buffer.alloc(1 << 20); }
    })());
    await refused(endless, 0, /over the limit of/, { ...limits, maxBytes: 10 << 20 });
    assert.ok(pulled <= 1, `segment bytes pulled: ${pulled} MiB`);
  });

  it('a segment whose bytes are not its digest is refused when applied (Corrupt), naming the segment', async () => {
    const body = Buffer.from(rounds[0]);
    body[body.length - 10] ^= 0xff;
    const a = await RoundApplier.create(path.join(tmp, 'apply-bad'), { ram: pair.base.ramFile, disk: pair.base.diskFile });
    try {
      const rs = await openRound(pieces(body), 0, limits);
      await assert.rejects(a.apply(rs.segments(), compressor), (e: unknown) => e instanceof CloudletError && e.code === 'Corrupt' && /segment sha256:[0-9a-f]{64}/.test(e.message));
    } finally { a.close(); }
  });

  it('entries are typed: a non-list chunks or a string size does not reach the applier', async () => {
    const entries: unknown[] = [chunkEntry('0-4'), chunkEntry([[0, '1']]), chunkEntry([[0, 1]], '1'), { ...chunkEntry([[0, 1]]), size: '10' }];
    for (const e of entries) await refused(bodyOf(header([e as SegmentEntry])), 0, /round 0: segments\[0\]/);
  });
});
