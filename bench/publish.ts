/**
 * bench/publish: bytes and time to publish version 1 and then version 2 (one file changed) of an
 * overlay to a real docker-registry on loopback, and to pull v2 on a cold cache.
 * Peer measured in the same run: pushing the v2 overlay file whole as one blob (what a generic
 * "upload the file" tool does), to show what content-addressed segments save.
 *
 * Overlay pair, first found:
 *   1. CLOUDLET_BENCH_OVERLAYS=v1.overlay,v2.overlay
 *   2. the realistic guest (bench/lib/realisticV2.ts): v1 = the realistic launch VM's overlay as
 *      bench/overlay makes it; v2 = v1 synthesized, /srv/app/app.py of its Flask app edited and the
 *      service restarted, sync, pause, overlay. v2 is built here when missing or stale.
 *   3. only when the realistic guest cannot be built: generated, real overlays (sandbox/overlay) of
 *      generated images sized like the realistic guest's changes; said so in the output.
 * Then why v2 sends what it sends (bench/lib/segmentLayout.ts): chunks that really differ per image,
 * segments changed per kind, and what a content-defined segment layout would have sent; and, on the
 * realistic pair, what v2 would weigh stored against v1's launch (bench/lib/parentDelta.ts: a
 * parent-overlay chain, measured with the real writer; `sim_parent_delta_v2_vs_v1_bytes`).
 * On the realistic pair v2 is also made as a child overlay of v1 (the real feature, issue 13.3) and
 * published to a repository holding v1: ratio_v2_vs_v1_bytes is that publish's bytes over v1's
 * (ratio_v2_flat_vs_v1_bytes: v2 against the base), and the chain's launch is compared with v2's.
 * Last line: one JSON object with every figure and ratio_v2_vs_v1_bytes.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BlobUploader } from '../sandbox/registry/blobUploader';
import { sha256Digest } from '../sandbox/registry/digest';
import { readOverlayFile } from '../sandbox/registry/overlayFile';
import { publishOverlay, pullOverlay, RegistryClient } from '../sandbox/registry';
import { startRegistry } from '../test/integration/fixtures/registry';
import { makeOverlayPair } from '../test/integration/registry/realOverlays';
import { realisticPair } from './lib/realisticV2';
import { analyzeLayouts, type LayoutAnalysis } from './lib/segmentLayout';
import { parentDelta, type ParentDelta } from './lib/parentDelta';
import { BaseStore } from '../sandbox/base/store';
import { applyOverlay, OverlayReader } from '../sandbox/overlay';
import { applyChain, folderLookup, resolveChain } from '../sandbox/overlay/parentChain';
import { projectCache } from '../sandbox/common/paths';

interface Pair { v1: string; v2: string; v2Child?: string; source: string; kind: 'env' | 'realistic' | 'generated'; change: string; v2Built?: unknown }

async function findPair(work: string): Promise<Pair> {
  const env = process.env.CLOUDLET_BENCH_OVERLAYS;
  if (env) {
    const [v1, v2] = env.split(',');
    return { v1, v2, kind: 'env', source: `CLOUDLET_BENCH_OVERLAYS (${env})`, change: 'given' };
  }
  try {
    const r = await realisticPair((m) => console.log(`  ${m}`));
    return {
      v1: r.v1, v2: r.v2, v2Child: r.v2Child, kind: 'realistic', change: r.change, v2Built: r.v2Built,
      source: `realistic guest (Debian 12, systemd, 1 GiB RAM, 4 GiB disk, Flask + nginx-light; base ${r.baseId.slice(0, 12)}): v1 = launch VM overlay, v2 = v1 synthesized + one file changed`,
    };
  } catch (e) {
    console.log(`the realistic guest could not be built (${(e as Error).message}); falling back to generated images`);
  }
  console.log('generating real overlays of generated images (no VM)');
  console.log('  (shaped like the realistic guest: 24 MiB of new RAM pages, 8 MiB installed files, one 512 KiB file changed in v2)');
  const g = await makeOverlayPair(path.join(work, 'gen'), { ramMiB: 64, diskMiB: 48, heapMiB: 24, appMiB: 8, confKiB: 512 });
  return { v1: g.v1.path, v2: g.v2.path, kind: 'generated', change: 'one 512 KiB file of the generated disk', source: 'GENERATED images (no VM): the realistic guest could not be built' };
}

const mb = (n: number) => Math.round(n / 1e4) / 100;

/** Whether synthesis of `flat` (against the base) and of `childFile` (with its chain, pulled next to it) build the same launch RAM and disk. */
async function sameLaunch(flat: string, childFile: string, base: { baseId: string; ramFile: string; diskFile: string }, dir: string): Promise<boolean> {
  const readers: OverlayReader[] = [];
  try {
    const f = OverlayReader.open(flat); readers.push(f);
    const c = OverlayReader.open(childFile); readers.push(c);
    const a = await applyOverlay(f, f, base, { outDir: path.join(dir, 'flat') });
    const chain = await resolveChain({ manifest: c.manifest, overlayId: c.overlayId, source: c }, folderLookup([path.dirname(childFile)], readers));
    const b = await applyChain(chain, base, { outDir: path.join(dir, 'child') });
    const ramSame = spawnSync('cmp', ['-s', a.ramFile, b.ramFile]).status === 0;
    const diskSame = spawnSync('qemu-img', ['compare', '-q', a.diskLayer, b.diskLayer]).status === 0;
    return ramSame && diskSame && fs.readFileSync(a.deviceState).equals(fs.readFileSync(b.deviceState));
  } finally {
    for (const r of readers) r.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-bench-publish-'));
  const reg = await startRegistry();
  try {
    console.log('overlay pair:');
    const pair = await findPair(work);
    const i1 = readOverlayFile(pair.v1);
    const i2 = readOverlayFile(pair.v2);
    console.log(`overlays: ${pair.source}`);
    console.log(`  v2 change: ${pair.change}`);
    console.log(`  v1 ${i1.overlayId.slice(0, 12)} ${mb(i1.fileSize)} MB, ${i1.segments.length} segments`);
    console.log(`  v2 ${i2.overlayId.slice(0, 12)} ${mb(i2.fileSize)} MB, ${i2.segments.length} segments`);
    const storeRoot = path.join(work, 'store');
    const conn = { credentials: null, storeRoot };

    const p1 = await publishOverlay(pair.v1, `${reg.host}/bench/app:v1`, conn);
    console.log(`publish v1: ${mb(p1.bytesSent)} MB sent in ${p1.seconds.toFixed(3)} s (${p1.segments.uploaded} segments)`);
    const p2 = await publishOverlay(pair.v2, `${reg.host}/bench/app:v2`, conn);
    console.log(`publish v2: ${mb(p2.bytesSent)} MB sent in ${p2.seconds.toFixed(3)} s (${p2.segments.uploaded} uploaded, ${p2.segments.skipped} already there)`);

    // Peer: the whole v2 file as one blob into a fresh repository (monolithic upload, no dedup).
    const client = new RegistryClient(reg.host, { credentials: null });
    const whole = fs.readFileSync(pair.v2);
    const t0 = Date.now();
    await new BlobUploader(client, 'bench/wholefile').upload(whole, sha256Digest(whole));
    const wholeSeconds = (Date.now() - t0) / 1000;
    const wholeBytes = client.stats.bytesSent;
    await client.close();
    console.log(`peer, v2 file pushed whole: ${mb(wholeBytes)} MB in ${wholeSeconds.toFixed(3)} s`);

    const pull = await pullOverlay(`${reg.host}/bench/app:v2`, path.join(work, 'pulled.overlay'), { ...conn, cacheDir: path.join(work, 'cache') });
    const identical = fs.readFileSync(pull.file).equals(whole);
    console.log(`pull v2 (cold cache): ${mb(pull.bytesDownloaded)} MB in ${pull.seconds.toFixed(3)} s, identical: ${identical}`);

    const v1Digests = new Set(i1.segments.map((x) => x.digest));
    const changed = i2.segments.filter((s) => !v1Digests.has(s.digest));
    // Which segments v2 re-sent, per kind (RAM chunks, disk chunks, device state).
    const kindOf = (e: { kind: string; target?: string }) => (e.kind === 'chunks' ? e.target! : 'device_state');
    const byKind: Record<string, { segments: number; changed: number; bytes: number; changedBytes: number }> = {};
    for (const e of i2.manifest.segments) {
      const k = (byKind[kindOf(e)] ??= { segments: 0, changed: 0, bytes: 0, changedBytes: 0 });
      k.segments++; k.bytes += e.size;
      if (!v1Digests.has(e.digest)) { k.changed++; k.changedBytes += e.size; }
    }
    for (const [k, v] of Object.entries(byKind)) console.log(`  v2 ${k}: ${v.changed} of ${v.segments} segments changed, ${mb(v.changedBytes)} of ${mb(v.bytes)} MB`);
    let layout: LayoutAnalysis | undefined;
    try {
      layout = await analyzeLayouts(pair.v1, pair.v2);
      for (const t of ['ram', 'disk'] as const) {
        const c = layout.changedChunks[t];
        console.log(`  ${t}: ${c.differing} chunks really differ between v1 and v2 (of ${c.v2} changed vs the base; ${mb(c.differingPayloadBytes)} MB of payload, ${mb(c.deltaBytes)} MB compressed alone)`);
      }
      for (const [name, l] of Object.entries(layout.layouts)) {
        const up = l.ram.changed_bytes_v2 + l.disk.changed_bytes_v2 + (byKind.device_state?.changedBytes ?? 0);
        console.log(`  layout ${name}: v2 would upload RAM ${l.ram.changed_segments_v2}/${l.ram.segments_v2} segments ${mb(l.ram.changed_bytes_v2)} MB, disk ${l.disk.changed_segments_v2}/${l.disk.segments_v2} segments ${mb(l.disk.changed_bytes_v2)} MB; with the device state ${mb(up)} MB`);
      }
      if (!layout.writerRuleReproduced) console.log('  warning: re-cutting with the writer\'s rule did not reproduce the overlays\' segments (writer changed?)');
    } catch (e) {
      console.log(`  segment layout analysis failed: ${(e as Error).message}`);
    }
    // Issue 13.3, the real feature: v2 as a child overlay of v1, published to a repository holding v1.
    // Its own publication history, so nothing is mounted from bench/app (flat v2's device state is the same bytes).
    let child: { publish: Awaited<ReturnType<typeof publishOverlay>>; fileBytes: number; pullBytes: number; pullSeconds: number; sameLaunch?: boolean; chainMs?: number } | undefined;
    if (pair.v2Child) {
      const ic = readOverlayFile(pair.v2Child);
      const chainConn = { credentials: null, storeRoot: path.join(work, 'store-chain') };
      await publishOverlay(pair.v1, `${reg.host}/bench/chain:v1`, chainConn);
      const pc = await publishOverlay(pair.v2Child, `${reg.host}/bench/chain:v2`, chainConn);
      console.log(`publish v2 as a child of v1 (${ic.overlayId.slice(0, 12)}, ${mb(ic.fileSize)} MB file): ${mb(pc.bytesSent)} MB sent in ${pc.seconds.toFixed(3)} s (${pc.segments.uploaded} uploaded, ${pc.segments.skipped} already there)`);
      const pulled = await pullOverlay(`${reg.host}/bench/chain:v2`, path.join(work, 'chain', 'v2.overlay'), { ...chainConn, cacheDir: path.join(work, 'cache-chain') });
      console.log(`pull v2 child + its parent v1 (cold cache): ${mb(pulled.bytesDownloaded + (pulled.parents ?? []).reduce((n, p) => n + p.bytesDownloaded, 0))} MB in ${pulled.seconds.toFixed(3)} s`);
      child = { publish: pc, fileBytes: ic.fileSize, pullBytes: pulled.bytesDownloaded + (pulled.parents ?? []).reduce((n, p) => n + p.bytesDownloaded, 0), pullSeconds: pulled.seconds };
      try {
        const b = new BaseStore(projectCache('bench-overlay', 'realistic', 'home')).get(i2.manifest.baseId);
        const t = Date.now();
        child.sameLaunch = await sameLaunch(pair.v2, pulled.file, { baseId: b.id, ramFile: b.ram, diskFile: b.disk }, path.join(work, 'launches'));
        child.chainMs = Date.now() - t;
        console.log(`  the chain v1 -> v2-child builds the same launch RAM and disk as v2 against the base: ${child.sameLaunch} (${(child.chainMs / 1000).toFixed(1)} s)`);
      } catch (e) {
        console.log(`  launch comparison failed: ${(e as Error).message}`);
      }
    }

    // Issue 13.3: v2 stored against its parent v1 (measured with the real writer; format unchanged).
    let delta: ParentDelta | undefined;
    if (pair.kind === 'realistic') {
      try {
        const b = new BaseStore(projectCache('bench-overlay', 'realistic', 'home')).get(i2.manifest.baseId);
        delta = await parentDelta(pair.v1, pair.v2, { baseId: b.id, ramFile: b.ram, diskFile: b.disk, diskDigests: b.diskDigests }, (m) => console.log(`  ${m}`));
        console.log(`  v2 against v1's launch (a parent-chain overlay): ${mb(delta.bytes)} MB (RAM ${delta.ram.chunks} chunks ${mb(delta.ram.bytes)} MB ${JSON.stringify(delta.ram.encodings)}; disk ${delta.disk.chunks} chunks ${mb(delta.disk.bytes)} MB; device state ${mb(delta.deviceStateBytes)} MB; ${delta.revertedDiskChunks} v1 disk chunks reverted), ${(delta.ms / 1000).toFixed(1)} s`);
      } catch (e) {
        console.log(`  parent-delta measurement failed: ${(e as Error).message}`);
      }
    }
    const sim = (name: 'cdc' | 'cdc64') => layout
      ? layout.layouts[name].ram.changed_bytes_v2 + layout.layouts[name].disk.changed_bytes_v2 + (byKind.device_state?.changedBytes ?? 0)
      : undefined;
    const segBytesV1 = i1.segments.reduce((n, x) => n + x.size, 0);
    const result = {
      bench: 'publish',
      overlay_source: pair.source,
      overlay_kind: pair.kind,
      v2_change: pair.change,
      v2_build: pair.v2Built,
      v1_overlay_id: i1.overlayId,
      v2_overlay_id: i2.overlayId,
      registry: 'docker-registry (distribution 2.8) on 127.0.0.1, plain HTTP',
      v1_file_bytes: i1.fileSize,
      v2_file_bytes: i2.fileSize,
      v1_segments: i1.segments.length,
      v2_segments: i2.segments.length,
      v2_changed_segments: changed.length,
      v2_changed_segment_bytes: changed.reduce((n, s) => n + s.size, 0),
      v2_changed_segments_ram: byKind.ram?.changed, v2_segments_ram: byKind.ram?.segments, v2_changed_segment_bytes_ram: byKind.ram?.changedBytes,
      v2_changed_segments_disk: byKind.disk?.changed, v2_segments_disk: byKind.disk?.segments, v2_changed_segment_bytes_disk: byKind.disk?.changedBytes,
      v2_changed_segment_bytes_device_state: byKind.device_state?.changedBytes,
      v2_differing_chunks_ram: layout?.changedChunks.ram.differing, v2_differing_chunks_disk: layout?.changedChunks.disk.differing,
      v2_differing_delta_bytes_ram: layout?.changedChunks.ram.deltaBytes, v2_differing_delta_bytes_disk: layout?.changedChunks.disk.deltaBytes,
      layout_writer_reproduced: layout?.writerRuleReproduced,
      sim_cdc_v2_upload_segment_bytes: sim('cdc'),
      sim_cdc64_v2_upload_segment_bytes: sim('cdc64'),
      sim_cdc_v2_vs_v1_segment_bytes: sim('cdc') !== undefined ? Math.round((sim('cdc')! / segBytesV1) * 10000) / 10000 : undefined,
      sim_cdc64_v2_vs_v1_segment_bytes: sim('cdc64') !== undefined ? Math.round((sim('cdc64')! / segBytesV1) * 10000) / 10000 : undefined,
      parent_delta_v2_bytes: delta?.bytes, parent_delta_v2_ram_bytes: delta?.ram.bytes, parent_delta_v2_disk_bytes: delta?.disk.bytes,
      parent_delta_v2_device_state_bytes: delta?.deviceStateBytes, parent_delta_v2_ram_encodings: delta?.ram.encodings, parent_delta_reverted_disk_chunks: delta?.revertedDiskChunks,
      // v2 published as a parent-chain overlay would send its own file plus a manifest (~the v1 manifest's size, counted in v1_publish_bytes - segments).
      sim_parent_delta_v2_vs_v1_bytes: delta ? Math.round(((delta.bytes + delta.revertedDiskChunks * 12) / p1.bytesSent) * 10000) / 10000 : undefined,
      v2_child_overlay_id: child?.publish.overlayId,
      v2_child_file_bytes: child?.fileBytes,
      v2_child_publish_bytes: child?.publish.bytesSent,
      v2_child_publish_seconds: child?.publish.seconds,
      v2_child_segment_bytes_uploaded: child?.publish.segmentBytes.uploaded,
      v2_child_chain_pull_bytes: child?.pullBytes,
      v2_child_chain_pull_seconds: child?.pullSeconds,
      v2_child_same_launch_as_flat: child?.sameLaunch,
      v1_publish_bytes: p1.bytesSent,
      v1_publish_seconds: p1.seconds,
      v2_publish_bytes: p2.bytesSent,
      v2_publish_seconds: p2.seconds,
      v2_segment_bytes_uploaded: p2.segmentBytes.uploaded,
      v2_segment_bytes_skipped: p2.segmentBytes.skipped,
      peer_whole_file_bytes: wholeBytes,
      peer_whole_file_seconds: wholeSeconds,
      v2_pull_bytes: pull.bytesDownloaded,
      v2_pull_seconds: pull.seconds,
      v2_pull_identical: identical,
      // Issue 13.3: v2 published as a child of v1 when the pair has one (the realistic pair), else v2 against the base.
      ratio_v2_vs_v1_bytes: Math.round(((child?.publish.bytesSent ?? p2.bytesSent) / p1.bytesSent) * 10000) / 10000,
      ratio_v2_vs_v1_bytes_from: child ? 'v2 published as a child overlay of v1' : 'v2 published against the base',
      ratio_v2_flat_vs_v1_bytes: Math.round((p2.bytesSent / p1.bytesSent) * 10000) / 10000,
      ratio_v2_vs_v1_seconds: Math.round((p2.seconds / p1.seconds) * 1000) / 1000,
      ratio_v2_vs_whole_file_bytes: Math.round((p2.bytesSent / wholeBytes) * 10000) / 10000,
    };
    console.log(JSON.stringify(result));
  } finally {
    await reg.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
