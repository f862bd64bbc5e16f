/**
 * Overlays and chains from hostile sources, with the real OCI registry and a real daemon:
 * - the overlay ID does not cover compressed bytes, so a registry can serve a broken file under a
 *   good overlay's ID; pull verifies every hop before it enters the store and the good copy stays;
 * - a child overlay given to a daemon by http(s) URL (its own Glance) is refused at the request:
 *   the daemon never looks parents up in its store, where other projects' overlays live;
 * - publishing a child looks for its parent among the repository's tags: a decoy tag whose ID
 *   annotation names the parent, or a broken artifact, is passed over, never chosen or fatal.
 */
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { canonicalJson, type OverlayManifest } from '../../sandbox/overlay/format';
import { OverlayReader } from '../../sandbox/overlay';
import { SegmentCompressor } from '../../sandbox/overlay/segmentCompressor';
import { writeOverlayFile } from '../../sandbox/registry/overlayFile';
import { publishOverlay, pullOverlay } from '../../sandbox/registry';
import { RegistryClient } from '../../sandbox/registry/registryClient';
import { ANNOTATION_OVERLAY_ID, ANNOTATION_PARENT_MANIFEST, OCI_MANIFEST } from '../../sandbox/registry/mediaTypes';
import { CloudletClient, type ApiError } from '../../sandbox/client';
import { startRegistry, type RegistryFixture } from './fixtures/registry';
import { startDaemon, TEST_USERS, type TestDaemon } from './fixtures/daemon';
import { sampleOverlay, uploadOverlay } from './fixtures/sampleOverlay';

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Writes `file`: the overlay at `from` with `edit` applied to its manifest and `segment` to its segments' bytes. */
async function rewriteOverlay(from: string, file: string, edit: (m: OverlayManifest) => void,
  segment: (digest: string, bytes: Buffer) => Promise<Buffer> = async (_d, b) => b): Promise<void> {
  const r = OverlayReader.open(from);
  try {
    const m = structuredClone(r.manifest) as OverlayManifest;
    const bytes = new Map<string, Buffer>();
    for (const s of m.segments) {
      const b = await segment(s.digest, await r.getSegment(s.digest));
      const d = `sha256:${sha256(b)}`;
      bytes.set(d, b);
      s.digest = d;
      s.size = b.length;
    }
    edit(m);
    await writeOverlayFile(file, Buffer.from(canonicalJson(m)), m.segments.map((s) => s.digest), async (d) => bytes.get(d)!);
  } finally {
    r.close();
  }
}

describe('hostile overlay chains: pull verifies every hop, a daemon takes no parents from its store', function () {
  this.timeout(600_000);
  let reg: RegistryFixture;
  let good: string, goodId: string;
  let dir: string;

  before(async () => {
    good = await sampleOverlay();
    goodId = (() => { const r = OverlayReader.open(good); try { return r.overlayId; } finally { r.close(); } })();
    reg = await startRegistry();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostile-chain-'));
  });
  after(async () => {
    await reg?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a registry copy with the good overlay\'s ID but a device state that decodes to other bytes: pull refuses it, the store\'s good file stays', async () => {
    // Same ID (the ID names content by rawDigest, not compressed bytes): the device state's bytes changed, its rawDigest kept.
    const tampered = path.join(dir, 'tampered.overlay');
    const zstd = new SegmentCompressor(1);
    try {
      const ds = OverlayReader.open(good);
      const dsDigest = ds.manifest.segments.find((s) => s.kind === 'device-state')!.digest;
      ds.close();
      await rewriteOverlay(good, tampered, () => {}, async (d, b) => {
        if (d !== dsDigest) return b;
        const raw = await zstd.decompress(b);
        raw[raw.length - 1] ^= 0xff;
        return (await zstd.compress(raw, 3)).data;
      });
    } finally { await zstd.close(); }
    const t = OverlayReader.open(tampered);
    assert.equal(t.overlayId, goodId, 'the tampered file carries the good overlay\'s ID');
    t.close();
    await publishOverlay(tampered, `${reg.host}/apps/hostile:v1`, { credentials: null, storeRoot: path.join(dir, 'pub') });

    const store = path.join(dir, 'store');
    fs.mkdirSync(store);
    const target = path.join(store, `${goodId}.overlay`);
    fs.copyFileSync(good, target);
    const before = sha256(fs.readFileSync(target));
    await assert.rejects(pullOverlay(`${reg.host}/apps/hostile:v1`, target, { credentials: null, cacheDir: path.join(dir, 'cache') }),
      (e: unknown) => isCloudletError(e, 'Corrupt') && /decompresses to content/.test((e as Error).message));
    assert.equal(sha256(fs.readFileSync(target)), before, 'the good overlay in the store is untouched');
    assert.deepEqual(fs.readdirSync(store), [`${goodId}.overlay`], 'no temp file left');
  });

  it('a daemon refuses a child overlay from its own Glance at the request (400, names oci:// and flatten); no server is made', async () => {
    const child = path.join(dir, 'child.overlay');
    await rewriteOverlay(good, child, (m) => { m.parent = { id: goodId, depth: 1 }; });
    let d: TestDaemon | undefined;
    try {
      d = await startDaemon({ ip: '127.0.0.2' });
      const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const url = await uploadOverlay(c, child, 'child');
      await assert.rejects(c.createServer({ name: 'from-glance-child', overlayUrl: url }), (e: ApiError) => {
        assert.equal(e.httpStatus, 400, String(e));
        assert.match(e.message, /child of overlay .*oci:\/\//);
        assert.equal(e.code, 'BadInput');
        assert.match(e.hint ?? '', /flatten/);
        return true;
      });
      assert.deepEqual((await c.listServers()).map((s) => s.name), []);
    } finally {
      await d?.stop();
    }
  });
  it('publishing a child passes over a decoy tag whose ID annotation names the parent and a broken artifact: the real parent is named', async () => {
    const repo = 'apps/decoy';
    const pub = (file: string, tag: string) => publishOverlay(file, `${reg.host}/${repo}:${tag}`, { credentials: null, storeRoot: path.join(dir, `pub-${tag}`) });
    // Another overlay, published, then its artifact re-pushed with the parent's ID annotation. Hostile tags sort
    // both before and after the real parent's and are pushed first: whatever order the registry lists, one comes first.
    const other = path.join(dir, 'other.overlay');
    await rewriteOverlay(good, other, (m) => { m.vmConfig.ports = [...(m.vmConfig.ports ?? []), 8999]; });
    const decoy = await pub(other, 'a-decoy');
    assert.notEqual(decoy.overlayId, goodId);
    const client = new RegistryClient(reg.host, { plainHttp: true, credentials: null });
    try {
      const m = JSON.parse((await client.getManifest(repo, 'a-decoy')).body.toString('utf8')) as { annotations: Record<string, string>; config: { size: number } };
      m.annotations[ANNOTATION_OVERLAY_ID] = goodId;
      for (const t of ['a-decoy', 'y-decoy']) await client.putManifest(repo, t, Buffer.from(JSON.stringify(m)), OCI_MANIFEST);
      // Broken artifacts: the config is declared larger than the manifest limit.
      m.config.size = 2 ** 40;
      for (const t of ['0-broken', 'zz-broken']) await client.putManifest(repo, t, Buffer.from(JSON.stringify(m)), OCI_MANIFEST);
    } finally { await client.close(); }
    const real = await pub(good, 'm1');

    const child = path.join(dir, 'decoy-child.overlay');
    await rewriteOverlay(good, child, (m) => { m.parent = { id: goodId, depth: 1 }; });
    const r = await pub(child, 'v2');
    const reader = new RegistryClient(reg.host, { plainHttp: true, credentials: null });
    try {
      const a = JSON.parse((await reader.getManifest(repo, 'v2')).body.toString('utf8')) as { annotations: Record<string, string> };
      assert.equal(a.annotations[ANNOTATION_PARENT_MANIFEST], real.manifestDigest, 'the child names the real parent\'s manifest, not the decoy');
    } finally { await reader.close(); }
    assert.equal(r.overlayId.length, 64);
  });
});
