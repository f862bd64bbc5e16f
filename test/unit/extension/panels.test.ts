import { strict as assert } from 'assert';
import { applyPhase, chartSlices, compositionFromManifest, discardedFromResult, handoffResult, initialOverlayState, initialServerState, overlayEnded, overlayProgress, serverEnded, serverProgress } from '../../../extension/state/panels';

describe('extension panel state', () => {
  it('phases: a new phase name closes the open one, repeated events update it', () => {
    let p = applyPhase([], { phase: 'resume', at: 1000 });
    p = applyPhase(p, { phase: 'scan-ram', done: 10, total: 100, at: 1500 });
    p = applyPhase(p, { phase: 'scan-ram', done: 60, total: 100, at: 1700 });
    p = applyPhase(p, { phase: 'compress', at: 2000 });
    assert.deepEqual(p.map((x) => [x.name, x.startedAt, x.endedAt, x.done]), [['resume', 1000, 1500, undefined], ['scan-ram', 1500, 2000, 60], ['compress', 2000, undefined, undefined]]);
  });

  it('what the build\'s discards left out comes from the job result; junk or absent figures give nothing (issue 13)', () => {
    assert.deepEqual(discardedFromResult({ overlay_id: 'o', discard: { memoryZeroedBytes: 5 * 1048576, diskFreedBytes: 0, skipped: [], ms: 3 } }), { memoryBytes: 5 * 1048576, diskBytes: 0 });
    assert.deepEqual(discardedFromResult({ discard: { memoryZeroedBytes: 7, skipped: ['disk: fstrim failed'] } }), { memoryBytes: 7, diskBytes: undefined });
    assert.equal(discardedFromResult({ discard: { memoryZeroedBytes: -1, diskFreedBytes: 'x' } }), undefined);
    assert.equal(discardedFromResult({ overlay_id: 'o' }), undefined);
    assert.equal(discardedFromResult(undefined), undefined);
  });

  it('overlay build: running, then done with the composition; a cancel keeps no composition', () => {
    let s = initialOverlayState('app');
    s = overlayProgress(s, { phase: 'install', at: 1 });
    assert.equal(s.status, 'running');
    const comp = compositionFromManifest({ overlayId: 'o', baseId: 'b', segments: [{ size: 100 }, { size: 50 }], breakdown: { ram: { zero: { chunks: 2 }, raw: { chunks: 3 } }, disk: { 'base-disk': { chunks: 1 } } }, deviceStateBytes: 800000 });
    const done = overlayEnded(s, { status: 'DONE' }, comp);
    assert.equal(done.status, 'done');
    assert.ok(done.phases.every((p) => p.endedAt !== undefined));
    assert.equal(done.composition?.compressedBytes, 150);
    const cancelled = overlayEnded(s, { status: 'CANCELLED', error: 'cancelled' });
    assert.equal(cancelled.status, 'cancelled');
    assert.equal(cancelled.composition, undefined);
    assert.equal(overlayEnded(s, { status: 'ERROR', error: 'disk full' }).error, 'disk full');
  });

  it('composition is read from several manifest shapes; unknown encodings are skipped', () => {
    const a = compositionFromManifest({ id: 'x', base_id: 'b', compressed_bytes: 10, segments: 2,
      breakdown: [{ area: 'memory', encoding: 'base_memory', chunks: 4 }, { area: 'disk', encoding: 'xdelta3', chunks: 1, bytes: 300 }, { area: 'disk', encoding: 'weird', chunks: 9 }] })!;
    assert.deepEqual(a.parts, [{ area: 'ram', encoding: 'base-ram', chunks: 4, bytes: 16384 }, { area: 'disk', encoding: 'delta', chunks: 1, bytes: 300 }]);
    assert.equal(a.rawBytes, 16684);
    assert.equal(a.segments, 2);
    assert.equal(compositionFromManifest(null), undefined);
    assert.deepEqual(compositionFromManifest({})!.parts, []);
  });

  it('composition from the overlay format\'s own manifest (breakdown per image with encodings)', () => {
    const enc = (o: Record<string, number>) => ({ zero: 0, baseRam: 0, baseDisk: 0, self: 0, raw: 0, xor: 0, ...o });
    const c = compositionFromManifest({ baseId: 'b1', overlayId: 'o1', size: 5000,
      segments: [{ digest: 'sha256:a', kind: 'chunks', size: 3000 }, { digest: 'sha256:b', kind: 'device-state', size: 2000 }],
      breakdown: { ram: { chunks: 5, encodings: enc({ raw: 2, baseRam: 3 }), payloadBytes: 8192 }, disk: { chunks: 1, encodings: enc({ xor: 1 }) }, deviceStateBytes: 7000 } })!;
    assert.deepEqual(c.parts.map((p) => `${p.area}:${p.encoding}:${p.chunks}`), ['ram:base-ram:3', 'ram:raw:2', 'disk:delta:1', 'state:state:1']);
    assert.equal(c.compressedBytes, 5000);
    assert.equal(c.segments, 2);
    assert.equal(c.baseId, 'b1');
  });

  it('chart slices: largest first, shares add up to 1', () => {
    const c = compositionFromManifest({ breakdown: { ram: { raw: 3, zero: 1 }, disk: { self: 4 } }, deviceStateBytes: 4096 })!;
    const slices = chartSlices(c);
    assert.deepEqual(slices.map((s) => s.key), ['disk:self', 'ram:raw', 'ram:zero', 'state:state']);
    assert.ok(Math.abs(slices.reduce((n, s) => n + s.share, 0) - 1) < 1e-9);
    assert.equal(slices[0].label, 'Disk: copy within overlay');
    assert.deepEqual(chartSlices(undefined), []);
  });

  it('server panel: synthesis phases, then ACTIVE', () => {
    let s = initialServerState('srv', 'app', 'edge1', 'BUILD');
    s = serverProgress(s, 'synthesis', { phase: 'fetch', done: 100, total: 1000, at: 10 });
    s = serverProgress(s, 'synthesis', { phase: 'fetch', done: 1000, total: 1000, at: 20 });
    s = serverProgress(s, 'synthesis', { phase: 'resume', at: 30 });
    assert.equal(s.bytesSent, 1000);
    s = serverEnded(s, { status: 'DONE' }, { status: 'ACTIVE' });
    assert.equal(s.status, 'ACTIVE');
    assert.equal(s.phases.length, 2);
    assert.equal(s.error, undefined);
  });

  it('server panel: a handoff reports downtime, total time and bytes from the job result', () => {
    let s = initialServerState('srv', 'app', 'edge1', 'ACTIVE');
    s = serverProgress(s, 'synthesis', { phase: 'fetch', at: 1 });
    s = serverProgress(s, 'handoff', { phase: 'handoff-round-1', done: 5000, at: 100 });
    assert.equal(s.phases.length, 1, 'a new operation starts a new timeline');
    s = serverEnded(s, { status: 'DONE', result: { destination_server_id: 'd1', total_ms: 4200, downtime_ms: 310, bytes_sent: 123456 } }, { status: 'ACTIVE', destination: 'edge2' });
    assert.deepEqual([s.downtimeMs, s.totalMs, s.bytesSent, s.destination], [310, 4200, 123456, 'edge2']);
    const failed = serverEnded(s, { status: 'ERROR', error: 'destination lacks base' }, { status: 'ACTIVE' });
    assert.equal(failed.error, 'destination lacks base');
    assert.deepEqual(handoffResult({ handoff: { downtimeMs: 5, totalMs: 9, bytesSent: 1 } }), { downtimeMs: 5, totalMs: 9, bytesSent: 1, destServerId: undefined });
    // Issue 18.4: the tracking method and the RAM pages per round come from the report; junk is dropped.
    const tracked = serverEnded(s, { status: 'DONE', result: { downtime_ms: 90, tracking: 'full-compare', tracking_fallback: 'CLOUDLET_HANDOFF_TRACKER=compare', round_pages: [900, 40, 3] } }, { status: 'ACTIVE' });
    assert.deepEqual([tracked.tracking, tracked.trackingFallback, tracked.roundPages], ['full-compare', 'CLOUDLET_HANDOFF_TRACKER=compare', [900, 40, 3]]);
    assert.equal(handoffResult({ round_pages: [1, 'x'] }).roundPages, undefined);
    assert.equal(handoffResult({ downtime_s: 0.5 }).downtimeMs, 500);
  });
});
