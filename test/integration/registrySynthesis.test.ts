/**
 * Synthesis from registry references with real QEMU: the sample back-end is built on the test base,
 * its overlay published to docker-registry (plain, then htpasswd + TLS), the sandbox removed, and the
 * launch VM synthesized straight from `oci://...` (segments pulled in parallel, verified, cached);
 * the back-end answers with its page and the next value of its in-RAM counter.
 * Then the same through a cloudlet daemon's Nova API (metadata.overlay_url = oci://...), as tenants:
 * the daemon's own registry login is lent to no project, a member pulls with the login its request
 * brings, and the blob cache serves a project only what its own pulls downloaded (bob, who knows the
 * digests of alice's private overlay and lists them in his own registry, gets no VM from her cache).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { loadBuildFile } from '../../sandbox/build/buildFile';
import { runBuild, BuildResult } from '../../sandbox/build/build';
import { synthesize } from '../../sandbox/overlay/sandboxOverlay';
import { ApiError, CloudletClient } from '../../sandbox/client';
import { registryAuthFor } from '../../sandbox/registry/synthesisLogin';
import { BlobCache, Credentials, openOverlayFromOci, publishOverlay, RegistryClient } from '../../sandbox/registry';
import { httpGet } from './fixtures/sampleOverlay';
import { startRegistry, RegistryFixture } from './fixtures/registry';
import { startDaemon, testConfig, TEST_USERS } from './fixtures/daemon';
import { runCli } from './registry/cli';
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

  it('through a cloudlet daemon: the daemon\'s registry login is lent only to projects granted it; a member\'s own login (as the CLI sends it) synthesizes; no blobs from another project\'s cache; anonymous from a public registry works', async () => {
    const reg = registries.secure!;
    const creds = new Credentials(reg.username!, reg.password!);
    await publishOverlay(built.overlay.path, `${reg.host}/apps/sample:v1`, { credentials: creds, ca: reg.caPem, storeRoot: path.join(th.home, 'store-daemon') });
    // The operator's own login, in the daemon user's Docker file: before this change any project pulled with it.
    // The operator grants its login for this registry to project demo only (registry_logins).
    const d = await startDaemon({ ip: '127.0.0.3', withTestBase: true, config: testConfig({ registry_logins: { [reg.host]: ['demo'] } }),
      env: { DOCKER_CONFIG: dockerConfig('daemon-docker', reg.host, creds.toRequestAuth()), CLOUDLET_REGISTRY_CA: reg.caFile! } });
    const hostile = await startHostileRegistry();
    try {
      const alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const bob = await CloudletClient.login({ authUrl: d.authUrl, username: 'bob', password: TEST_USERS.bob, project: 'other' });
      const privateRef = `oci://${reg.host}/apps/sample:v1`;
      const cacheRoot = path.join(d.dataDir, 'cache', 'blobs');

      // 1. bob (project other) names alice's private repository with no login: the registry's refusal, as a 403 with its code; nothing made or cached.
      await assert.rejects(bob.createServer({ name: 'steal', overlayUrl: privateRef }), (e: ApiError) =>
        e.httpStatus === 403 && e.code === 'RegistryRefused' && /requires a login/.test(e.message) && /registry_auth/.test(e.hint ?? ''));
      // ... nor with a wrong password (named by user, never echoed).
      await assert.rejects(bob.createServer({ name: 'steal', overlayUrl: privateRef, registryAuth: { username: reg.username!, password: 'Wr0ng-pass' } }), (e: ApiError) =>
        e.httpStatus === 403 && e.code === 'RegistryRefused' && /refused the username or password/.test(e.message) && !e.message.includes('Wr0ng-pass'));
      assert.deepEqual(await bob.listServers(), []);
      assert.ok(!fs.existsSync(cacheRoot) || walk(cacheRoot).length === 0, `nothing cached: ${walk(cacheRoot).join(', ')}`);

      // 2. alice with her own login, found as the CLI and the extension find it (her Docker file on her machine): the back-end answers.
      const registryAuth = registryAuthFor(privateRef, path.join(dockerConfig('alice-docker', reg.host, creds.toRequestAuth()), 'config.json'));
      assert.equal(registryAuth?.username, reg.username);
      const created = await alice.createServer({ name: 'from-oci', overlayUrl: privateRef, registryAuth, metadata: { ports: '80' } });
      const server = await alice.waitServer(created.id, ['ACTIVE', 'ERROR'], { timeoutMs: 600_000 });
      assert.equal(server.status, 'ACTIVE', JSON.stringify(server));
      const ports = (server as unknown as Record<string, Record<string, string>>)['OS-EXT-CLOUDLET:ports'];
      const page = await httpGet(ports['80'], '/index.html');
      assert.match(page.body, /sample back-end/);
      assert.equal((await httpGet(ports['80'], '/cgi-bin/counter')).body.trim(), '42');
      await alice.deleteServer(created.id);
      assert.ok(!d.log().includes(reg.password!), 'the password is in no log line of the daemon');
      const segments = built.overlay.manifest.segments.map((x) => x.digest);
      for (const g of segments) assert.ok(new BlobCache(cacheRoot).has(g), `segment ${g} cached`);
      const aliceScopes = fs.readdirSync(path.join(cacheRoot, 'scopes'));
      assert.equal(aliceScopes.length, 1, 'one project pulled so far');

      // 3. bob knows the digests (they are in any copy of the manifest): his own registry lists them and serves the
      // manifest and overlay manifest, not the private segments. The daemon asks that registry for every segment
      // instead of serving alice's cached copies: bob's synthesis fails, his cache scope holds no segment.
      const artifact = await fetchArtifact(reg, 'apps/sample', 'v1');
      hostile.serve('evil/copy', artifact);
      const stolen = await bob.createServer({ name: 'from-cache', overlayUrl: `oci://${hostile.host}/evil/copy:v1`, metadata: { ports: '80' } });
      const s = await bob.waitServer(stolen.id, ['ACTIVE', 'ERROR'], { timeoutMs: 600_000 });
      assert.equal(s.status, 'ERROR', 'bob got a VM from alice\'s cached segments');
      assert.match(JSON.stringify(s.fault), /not found/i);
      assert.ok(segments.some((g) => hostile.asked.includes(g)), `the daemon asked bob's registry for the segments (asked: ${hostile.asked.join(', ')})`);
      const bobsScope = walk(path.join(cacheRoot, 'scopes')).filter((f) => !f.startsWith(aliceScopes[0]));
      assert.ok(segments.every((g) => !bobsScope.some((f) => f.endsWith(g.slice(7)))), `no segment in bob's scope: ${bobsScope.join(', ')}`);
      await bob.deleteServer(stolen.id);

      // 4. The CLI, as bob: `cloudlet synthesize --cloudlet ... oci://` sends his own login from his Docker file
      // (DOCKER_CONFIG); with --no-registry-auth it sends none and the cloudlet's refusal is one clear line.
      const cliEnv = { CLOUDLET_HOME: path.join(th.home, 'bob-cli'), CLOUDLET_CONFIG_DIR: path.join(th.home, 'bob-cli', 'cli'), CLOUDLET_CLI_MAIN: '1',
        CLOUDLET_PASSWORD: TEST_USERS.bob, DOCKER_CONFIG: dockerConfig('bob-docker', reg.host, creds.toRequestAuth()) };
      const login = await runCli(['login', d.url, '--user', 'bob', '--project', 'other', '--name', 'edge'], cliEnv);
      assert.equal(login.code, 0, login.stderr);
      const refused = await runCli(['synthesize', '--cloudlet', 'edge', privateRef, '--no-registry-auth', '--json'], cliEnv);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /requires a login/);
      const viaCli = await runCli(['synthesize', '--cloudlet', 'edge', privateRef, '--name', 'from-cli', '--port', '80', '--json'], cliEnv);
      assert.equal(viaCli.code, 0, viaCli.stderr);
      const cs = JSON.parse(viaCli.stdout.trim().split('\n').pop()!);
      assert.equal(cs.status, 'ACTIVE', viaCli.stdout);
      assert.match((await httpGet(cs['OS-EXT-CLOUDLET:ports']['80'], '/index.html')).body, /sample back-end/);
      assert.ok(!viaCli.stdout.includes(reg.password!) && !viaCli.stderr.includes(reg.password!));
      await bob.deleteServer(cs.id);

      // 5. Anonymous pulls of a public repository keep working (the same overlay, now downloaded by bob himself),
      // and the CLI (--registry-auth auto, the default) sends no login for them: bob's Docker file holds one for the
      // public registry that the cloudlet would refuse with a 400 (a 5000-character password) if it were sent.
      // The private pull above (step 4) went through the retry: anonymous first, refused, then his login.
      const publicRef = `oci://${registries.plain!.host}/apps/sample:v1`;
      const tooLong = 'x'.repeat(5000);
      fs.writeFileSync(path.join(cliEnv.DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: {
        [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') },
        [registries.plain!.host]: { auth: Buffer.from(`bob:${tooLong}`).toString('base64') } } }), { mode: 0o600 });
      const always = await runCli(['synthesize', '--cloudlet', 'edge', publicRef, '--registry-auth', 'always', '--json'], cliEnv);
      assert.equal(always.code, 2, always.stdout); // the cloudlet's 400 (BadInput)
      assert.match(always.stderr, /registry_auth\.password/, 'with always the login is sent (this test can see it)');
      const anon = await runCli(['synthesize', '--cloudlet', 'edge', publicRef, '--name', 'public-cli', '--json'], cliEnv);
      assert.equal(anon.code, 0, anon.stderr);
      const anonServer = JSON.parse(anon.stdout.trim().split('\n').pop()!);
      assert.equal(anonServer.status, 'ACTIVE', anon.stdout);
      await bob.deleteServer(anonServer.id);
      const pub = await bob.createServer({ name: 'public', overlayUrl: publicRef, metadata: { ports: '80' } });
      const ps = await bob.waitServer(pub.id, ['ACTIVE', 'ERROR'], { timeoutMs: 600_000 });
      assert.equal(ps.status, 'ACTIVE', JSON.stringify(ps));
      await bob.deleteServer(pub.id);

      // 6. carol, of the granted project demo, pulls with the daemon's login without bringing one.
      const carol = await CloudletClient.login({ authUrl: d.authUrl, username: 'carol', password: TEST_USERS.carol, project: 'demo' });
      // A login the request brings is the one used, grant or not (so alice's pull above went with hers).
      await assert.rejects(carol.createServer({ name: 'wrong', overlayUrl: privateRef, registryAuth: { username: reg.username!, password: 'Wr0ng-pass' } }),
        (e: ApiError) => e.httpStatus === 403 && e.code === 'RegistryRefused');
      const granted = await carol.createServer({ name: 'granted', overlayUrl: privateRef });
      await carol.deleteServer(granted.id);

      // 7. The operator (an admin) still pulls with the daemon's own login.
      const admin = await CloudletClient.login({ authUrl: d.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' });
      const op = await admin.createServer({ name: 'operator', overlayUrl: privateRef });
      await admin.deleteServer(op.id);
    } finally {
      await hostile.close();
      await d.stop();
    }
  });

  /** A Docker config file (folder) holding one login, as `docker login` writes it. */
  function dockerConfig(name: string, host: string, login: { username: string; password: string }): string {
    const dir = path.join(th.home, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${login.username}:${login.password}`).toString('base64') } } }), { mode: 0o600 });
    return dir;
  }
});

/** Every file under `dir` (relative paths), [] when it does not exist. */
function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

/** The artifact manifest and overlay manifest (config blob) of a tag, read from the real registry with its login. */
async function fetchArtifact(reg: RegistryFixture, repo: string, tag: string): Promise<{ manifest: Buffer; mediaType: string; config: { digest: string; data: Buffer } }> {
  const client = new RegistryClient(reg.host, { credentials: new Credentials(reg.username!, reg.password!), ca: reg.caPem });
  try {
    const m = await client.getManifest(repo, tag);
    const config = (JSON.parse(m.body.toString('utf8')) as { config: { digest: string; size: number } }).config;
    return { manifest: m.body, mediaType: m.mediaType, config: { digest: config.digest, data: await client.fetchBlob(repo, config.digest, config.size) } };
  } finally { await client.close(); }
}

/**
 * The attacker's registry (project bob's): plain HTTP on loopback, answering with what bob could copy
 * (a manifest and its overlay manifest) and 404 for every other blob. Not a stand-in for the registry
 * under test (that is the real docker-registry above): the attacker's own server, which may say anything.
 */
async function startHostileRegistry(): Promise<{ host: string; asked: string[]; serve(repo: string, a: Awaited<ReturnType<typeof fetchArtifact>>): void; close(): Promise<void> }> {
  const asked: string[] = [];
  const repos = new Map<string, Awaited<ReturnType<typeof fetchArtifact>>>();
  const server = http.createServer((req, res) => {
    const u = req.url ?? '';
    if (u === '/v2/') { res.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }).end('{}'); return; }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(u);
    const a = m ? repos.get(m[1]) : undefined;
    if (m?.[2] === 'blobs') asked.push(m[3]);
    if (a && m?.[2] === 'manifests') { res.writeHead(200, { 'content-type': a.mediaType, 'content-length': a.manifest.length }).end(req.method === 'HEAD' ? undefined : a.manifest); return; }
    if (a && m?.[2] === 'blobs' && m[3] === a.config.digest) { res.writeHead(200, { 'content-length': a.config.data.length }).end(req.method === 'HEAD' ? undefined : a.config.data); return; }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`, asked,
    serve: (repo, a) => repos.set(repo, a),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
