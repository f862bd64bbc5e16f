/**
 * Parent overlays (issue 13.3) with real QEMU and the real OCI registry: v1 is the sample back-end
 * built on the test guest; v2 is a sandbox synthesized from v1 with a new page on its disk and its
 * in-RAM counter advanced, stored as a child of v1. Publishing v2 before v1 is refused; then both
 * are published, pull brings the chain, and a cloudlet daemon on 127.0.0.2 synthesizes v2 from
 * oci://...:v2 (its parent fetched from the same repository): the guest serves v2's page and
 * counter.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { projectRoot } from '../../sandbox/common/paths';
import { loadBuildFile } from '../../sandbox/build/buildFile';
import { runBuild, BuildResult } from '../../sandbox/build/build';
import { createSandboxOverlay, synthesize, type SandboxOverlayResult } from '../../sandbox/overlay/sandboxOverlay';
import { OverlayReader } from '../../sandbox/overlay';
import { CloudletClient } from '../../sandbox/client';
import { openOverlayFromOci, publishOverlay, pullOverlay, RegistryClient } from '../../sandbox/registry';
import { httpGet } from './fixtures/sampleOverlay';
import { startRegistry, RegistryFixture } from './fixtures/registry';
import { startDaemon, TEST_USERS } from './fixtures/daemon';
import { tempHome, TempHome } from './fixtures/testBase';

describe('parent overlays: v2 published as a child of v1, synthesized from the registry (real QEMU)', function () {
  this.timeout(900_000);
  let th: TempHome;
  let v1: BuildResult;
  let v2: SandboxOverlayResult;
  let reg: RegistryFixture;
  const store = () => path.join(th.home, 'publications');

  before(async () => {
    th = await tempHome();
    reg = await startRegistry();
    v1 = await runBuild(th.manager, loadBuildFile(path.join(projectRoot(), 'test/fixtures/sample-backend')), { base: th.baseId });
    await th.manager.delete(v1.sandbox.id);
    // v2: the sandbox synthesized from v1, a new page on disk and the RAM counter at 44.
    const src = await synthesize(th.manager, th.baseId, v1.overlay.path, { name: 'v2-src' });
    const fwd = src.sandbox.ports.find((p) => p.guest === 80)!;
    for (const want of ['42', '43', '44']) assert.equal((await httpGet(`127.0.0.1:${fwd.host}`, '/cgi-bin/counter')).body.trim(), want);
    const w = await th.manager.exec('v2-src', 'echo "<h1>sample back-end v2</h1>" > /srv/www/index.html && sync');
    assert.equal(w.exitCode, 0, JSON.stringify(w));
    v2 = await createSandboxOverlay(th.manager, 'v2-src', { parent: v1.overlay.overlayId });
    await th.manager.delete('v2-src');
  });
  after(async () => {
    await reg?.close();
    await th?.cleanup();
  });

  it('v2 is stored against v1 (parent {id, depth 1}): only what changed since v1\'s launch', () => {
    assert.deepEqual(v2.manifest.parent, { id: v1.overlay.overlayId, depth: 1 });
    // The test guest's overlays are mostly device state (~270 KB each); its changed chunks tell.
    const m1 = v1.overlay.manifest.breakdown, m2 = v2.manifest.breakdown;
    assert.ok(m2.ram.chunks < m1.ram.chunks / 3, `v2 ${m2.ram.chunks} memory chunks, v1 ${m1.ram.chunks}`);
    assert.ok(m2.disk.chunks < m1.disk.chunks, `v2 ${m2.disk.chunks} disk chunks, v1 ${m1.disk.chunks}`);
    assert.ok(v2.bytes < v1.overlay.bytes, `v2 ${v2.bytes} bytes, v1 ${v1.overlay.bytes}`);
  });

  it('publishing the child before its parent is in the repository is refused (NotFound, "publish ... there first")', async () => {
    await assert.rejects(() => publishOverlay(v2.path, `${reg.host}/apps/parent:v2`, { credentials: null, storeRoot: store() }), (e: unknown) => {
      assert.ok(isCloudletError(e, 'NotFound'), String(e));
      assert.match(e.message, new RegExp(`parent overlay ${v1.overlay.overlayId}.*publish ${v1.overlay.overlayId.slice(0, 12)} there first`));
      return true;
    });
  });

  it('v1 then v2 published: the child artifact names its parent; pull brings the chain', async () => {
    const p1 = await publishOverlay(v1.overlay.path, `${reg.host}/apps/parent:v1`, { credentials: null, storeRoot: store() });
    const p2 = await publishOverlay(v2.path, `${reg.host}/apps/parent:v2`, { credentials: null, storeRoot: store() });
    assert.equal(p2.overlayId, v2.overlayId);
    assert.ok(p2.segmentBytes.uploaded < p1.segmentBytes.uploaded, `v2 sent ${p2.segmentBytes.uploaded}, v1 ${p1.segmentBytes.uploaded}`);
    const oci = await openOverlayFromOci(`${reg.host}/apps/parent:v2`, { credentials: null, cacheDir: path.join(th.home, 'cache') });
    try {
      assert.deepEqual(oci.parent, { overlayId: v1.overlay.overlayId, manifestDigest: p1.manifestDigest });
    } finally { await oci.close(); }
    const out = path.join(th.home, 'pulled', 'v2.overlay');
    const pulled = await pullOverlay(`${reg.host}/apps/parent:v2`, out, { credentials: null, cacheDir: path.join(th.home, 'cache2') });
    assert.equal(pulled.overlayId, v2.overlayId);
    assert.deepEqual(pulled.parents?.map((p) => p.overlayId), [v1.overlay.overlayId]);
    const r = OverlayReader.open(path.join(th.home, 'pulled', `${v1.overlay.overlayId}.overlay`));
    assert.equal(r.overlayId, v1.overlay.overlayId);
    r.close();
  });

  it('a daemon on 127.0.0.2 synthesizes v2 from oci://...:v2 (chain from the registry): v2\'s page and counter; a child whose parent is gone is refused (NotFound), no server made', async () => {
    const d = await startDaemon({ ip: '127.0.0.2', withTestBase: true });
    try {
      const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const created = await c.createServer({ name: 'from-child', overlayUrl: `oci://${reg.host}/apps/parent:v2`, metadata: { ports: '80' } });
      const server = await c.waitServer(created.id, ['ACTIVE', 'ERROR'], { timeoutMs: 600_000 });
      assert.equal(server.status, 'ACTIVE', JSON.stringify(server));
      const ports = (server as unknown as Record<string, Record<string, string>>)['OS-EXT-CLOUDLET:ports'];
      assert.match((await httpGet(ports['80'], '/index.html')).body, /sample back-end v2/);
      assert.equal((await httpGet(ports['80'], '/cgi-bin/counter')).body.trim(), '45');
      await c.deleteServer(created.id);

      // Refused over the real registry: a child whose parent the repository no longer holds (its
      // artifact re-pushed under another tag pointing at a parent manifest that is not there).
      const client = new RegistryClient(reg.host, { credentials: null });
      try {
        const m = await client.getManifest('apps/parent', 'v2');
        const body = JSON.parse(m.body.toString('utf8')) as { annotations: Record<string, string> };
        body.annotations['org.cloudlet.overlay.parent.manifest'] = `sha256:${'0'.repeat(64)}`;
        await client.putManifest('apps/parent', 'orphan', Buffer.from(JSON.stringify(body)), m.mediaType);
      } finally { await client.close(); }
      await assert.rejects(() => c.createServer({ name: 'orphan', overlayUrl: `oci://${reg.host}/apps/parent:orphan`, metadata: { ports: '80' } }), (e: unknown) => {
        assert.ok(isCloudletError(e, 'NotFound'), String(e));
        assert.equal(e.status, 400, 'a request error (the overlay_url), not a missing resource of the API');
        assert.match(e.message, new RegExp(`needs its parent overlay ${v1.overlay.overlayId}.*pull or publish`));
        return true;
      });
      assert.equal((await c.listServers()).filter((x) => x.name === 'orphan').length, 0, 'a server was made for a refused request');
    } finally {
      await d.stop();
    }
  });
});
