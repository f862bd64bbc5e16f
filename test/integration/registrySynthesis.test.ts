/**
 * Synthesis from registry references with real QEMU: the sample back-end is built on the test base,
 * its overlay published to docker-registry (plain, then htpasswd + TLS), the sandbox removed, and the
 * launch VM synthesized straight from `oci://...` (segments pulled in parallel, verified, cached);
 * the back-end answers with its page and the next value of its in-RAM counter.
 * Then the same through a cloudlet daemon's Nova API (metadata.overlay_url = oci://...).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { loadBuildFile } from '../../sandbox/build/buildFile';
import { runBuild, BuildResult } from '../../sandbox/build/build';
import { synthesize } from '../../sandbox/overlay/sandboxOverlay';
import { CloudletClient } from '../../sandbox/client';
import { BlobCache, Credentials, openOverlayFromOci, publishOverlay } from '../../sandbox/registry';
import { httpGet } from './fixtures/sampleOverlay';
import { startRegistry, RegistryFixture } from './fixtures/registry';
import { startDaemon, TEST_USERS } from './fixtures/daemon';
import { tempHome, TempHome } from './fixtures/testBase';

describe('registry: synthesis from oci:// references with real QEMU', function () {
  this.timeout(900_000);
  let th: TempHome;
  let built: BuildResult;
  const registries: Record<'plain' | 'secure', RegistryFixture | undefined> = { plain: undefined, secure: undefined };

  before(async () => {
    th = await tempHome();
    built = await runBuild(th.manager, loadBuildFile(path.join(projectRoot(), 'test/fixtures/sample-backend')), { base: th.baseId });
    await th.manager.delete(built.sandbox.id);
    registries.plain = await startRegistry();
    registries.secure = await startRegistry({ auth: true, tls: true });
  });
  after(async () => {
    await registries.plain?.close();
    await registries.secure?.close();
    await th?.cleanup();
  });

  for (const mode of ['plain', 'secure'] as const) {
    it(`${mode === 'plain' ? 'plain HTTP' : 'htpasswd + TLS'}: publish, synthesize from the reference, the back-end answers`, async () => {
      const reg = registries[mode]!;
      const conn = { credentials: mode === 'secure' ? new Credentials(reg.username!, reg.password!) : null, ca: reg.caPem };
      const pub = await publishOverlay(built.overlay.path, `${reg.host}/apps/sample:v1`, { ...conn, storeRoot: path.join(th.home, `store-${mode}`) });
      assert.equal(pub.overlayId, built.overlay.overlayId);

      const cacheDir = path.join(th.home, `oci-cache-${mode}`);
      const oci = await openOverlayFromOci(`oci://${pub.digestReference}`, { ...conn, cacheDir });
      let name = '';
      try {
        const r = await synthesize(th.manager, th.baseId, oci, { name: `oci-${mode}` });
        name = r.sandbox.id;
        assert.equal(r.overlayId, built.overlay.overlayId);
        const fwd = r.sandbox.ports.find((p) => p.guest === 80);
        assert.ok(fwd, 'port 80 not forwarded');
        const page = await httpGet(`127.0.0.1:${fwd.host}`, '/index.html');
        assert.equal(page.status, 200);
        assert.match(page.body, /sample back-end/);
        assert.equal((await httpGet(`127.0.0.1:${fwd.host}`, '/cgi-bin/counter')).body.trim(), '42');
      } finally {
        await oci.close();
        if (name) await th.manager.delete(name);
      }
      // Every segment came through the verified cache.
      const cache = new BlobCache(cacheDir);
      for (const s of built.overlay.manifest.segments) assert.ok(cache.has(s.digest), `segment ${s.digest} not cached`);
    });
  }

  it('through a cloudlet daemon: POST /servers with metadata.overlay_url = oci://... (htpasswd + TLS), the back-end answers', async () => {
    const reg = registries.secure!;
    const dockerDir = path.join(th.home, 'daemon-docker');
    fs.mkdirSync(dockerDir, { recursive: true });
    fs.writeFileSync(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }), { mode: 0o600 });
    const d = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { DOCKER_CONFIG: dockerDir, CLOUDLET_REGISTRY_CA: reg.caFile! } });
    try {
      const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const created = await c.createServer({ name: 'from-oci', overlayUrl: `oci://${reg.host}/apps/sample:v1`, metadata: { ports: '80' } });
      const server = await c.waitServer(created.id, ['ACTIVE', 'ERROR'], { timeoutMs: 600_000 });
      assert.equal(server.status, 'ACTIVE', JSON.stringify(server));
      const ports = (server as unknown as Record<string, Record<string, string>>)['OS-EXT-CLOUDLET:ports'];
      const page = await httpGet(ports['80'], '/index.html');
      assert.match(page.body, /sample back-end/);
      assert.equal((await httpGet(ports['80'], '/cgi-bin/counter')).body.trim(), '42');
      await c.deleteServer(created.id);
    } finally {
      await d.stop();
    }
  });
});
