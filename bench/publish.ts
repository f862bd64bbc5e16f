/**
 * bench/publish: bytes and time to publish version 1 and then version 2 (one file changed) of an
 * overlay to a real docker-registry on loopback, and to pull v2 on a cold cache.
 * Peer measured in the same run: pushing the v2 overlay file whole as one blob (what a generic
 * "upload the file" tool does), to show what content-addressed segments save.
 *
 * Overlay pair, first found:
 *   1. CLOUDLET_BENCH_OVERLAYS=v1.overlay,v2.overlay
 *   2. .cache/bench/overlay/realistic-v1.overlay + realistic-v2.overlay (the overlay bench's realistic guest)
 *   3. .cache/bench/overlay/test-v1.overlay + test-v2.overlay (the test guest)
 *   4. generated: real overlays (sandbox/overlay) of generated images sized like the realistic guest's
 *      changes; said so in the output.
 * Last line: one JSON object with every figure and ratio_v2_vs_v1_bytes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectCache } from '../sandbox/common/paths';
import { BlobUploader } from '../sandbox/registry/blobUploader';
import { sha256Digest } from '../sandbox/registry/digest';
import { readOverlayFile } from '../sandbox/registry/overlayFile';
import { publishOverlay, pullOverlay, RegistryClient } from '../sandbox/registry';
import { startRegistry } from '../test/integration/fixtures/registry';
import { makeOverlayPair } from '../test/integration/registry/realOverlays';

function findPair(): { v1: string; v2: string; source: string } | undefined {
  const env = process.env.CLOUDLET_BENCH_OVERLAYS;
  if (env) {
    const [v1, v2] = env.split(',');
    return { v1, v2, source: `CLOUDLET_BENCH_OVERLAYS (${env})` };
  }
  for (const name of ['realistic', 'test']) {
    const v1 = projectCache('bench', 'overlay', `${name}-v1.overlay`);
    const v2 = projectCache('bench', 'overlay', `${name}-v2.overlay`);
    if (fs.existsSync(v1) && fs.existsSync(v2)) return { v1, v2, source: `${name} guest (${path.dirname(v1)})` };
  }
  return undefined;
}

const mb = (n: number) => Math.round(n / 1e4) / 100;

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-bench-publish-'));
  const reg = await startRegistry();
  try {
    let pair = findPair();
    if (!pair) {
      console.log('no realistic or test guest overlay pair in .cache/bench/overlay; generating real overlays of generated images');
      console.log('  (shaped like the realistic guest: 24 MiB of new RAM pages, 8 MiB installed files, one 512 KiB file changed in v2)');
      const g = await makeOverlayPair(path.join(work, 'gen'), { ramMiB: 64, diskMiB: 48, heapMiB: 24, appMiB: 8, confKiB: 512 });
      pair = { v1: g.v1.path, v2: g.v2.path, source: 'generated images (no VM): realistic guest overlay pair not available' };
    }
    const i1 = readOverlayFile(pair.v1);
    const i2 = readOverlayFile(pair.v2);
    console.log(`overlays: ${pair.source}`);
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

    const changed = i2.segments.filter((s) => !new Set(i1.segments.map((x) => x.digest)).has(s.digest));
    const result = {
      bench: 'publish',
      overlay_source: pair.source,
      registry: 'docker-registry (distribution 2.8) on 127.0.0.1, plain HTTP',
      v1_file_bytes: i1.fileSize,
      v2_file_bytes: i2.fileSize,
      v1_segments: i1.segments.length,
      v2_segments: i2.segments.length,
      v2_changed_segments: changed.length,
      v2_changed_segment_bytes: changed.reduce((n, s) => n + s.size, 0),
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
      ratio_v2_vs_v1_bytes: Math.round((p2.bytesSent / p1.bytesSent) * 10000) / 10000,
      ratio_v2_vs_v1_seconds: Math.round((p2.seconds / p1.seconds) * 1000) / 1000,
      ratio_v2_vs_whole_file_bytes: Math.round((p2.bytesSent / wholeBytes) * 10000) / 10000,
    };
    console.log(JSON.stringify(result));
  } finally {
    await reg.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
