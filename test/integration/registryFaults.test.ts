/**
 * Bad and failing cases against the real docker-registry on loopback, each with a clear message and
 * nothing wrong left in the cache: wrong password, registry down during a push (resumed), connection
 * cut during a pull (retried, then a clear error), a blob altered inside the registry's storage, and
 * a reference to something that is not an overlay.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startRegistry, RegistryFixture } from './fixtures/registry';
import { makeOverlayPair, OverlayPair } from './registry/realOverlays';
import { startTcpProxy, TcpProxy } from './registry/tcpProxy';
import { runCli } from './registry/cli';
import { isCloudletError } from '../../sandbox/common/errors';
import { applyOverlay } from '../../sandbox/overlay/apply';
import { BlobCache, Credentials, openOverlayFromOci, publishOverlay, pullOverlay, RegistryClient } from '../../sandbox/registry';
import { BlobUploader } from '../../sandbox/registry/blobUploader';
import { sha256Digest } from '../../sandbox/registry/digest';
import { OCI_MANIFEST } from '../../sandbox/registry/mediaTypes';

/** Short back-off so failure tests stay quick; bounded as in production. */
const FAST_RETRY = { attempts: 4, baseDelayMs: 50, maxDelayMs: 200 };

function assertCacheClean(cacheDir: string): void {
  const cache = new BlobCache(cacheDir);
  for (const d of cache.list()) assert.equal(sha256Digest(fs.readFileSync(cache.pathOf(d))), d, `cache holds a bad blob under ${d}`);
  const stray = fs.existsSync(path.join(cacheDir, 'sha256')) ? fs.readdirSync(path.join(cacheDir, 'sha256')).filter((n) => !/^[a-f0-9]{64}$/.test(n)) : [];
  assert.deepEqual(stray, [], 'temp files left in the cache');
}

describe('registry: failures', function () {
  let pair: OverlayPair;
  let work: string;

  before(async function () {
    this.timeout(120_000);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-registry-faults-'));
    pair = await makeOverlayPair(path.join(work, 'overlays'));
  });
  after(() => { if (work) fs.rmSync(work, { recursive: true, force: true }); });

  describe('wrong password (htpasswd + TLS)', () => {
    let reg: RegistryFixture;
    before(async () => { reg = await startRegistry({ auth: true, tls: true }); });
    after(async () => { await reg?.close(); });

    it('refuses a wrong password and a missing login with a clear message, caching nothing', async () => {
      const cacheDir = path.join(work, 'cache-auth');
      const wrong = { credentials: new Credentials(reg.username!, 'not-the-password'), ca: reg.caPem, storeRoot: path.join(work, 'store-auth') };
      await assert.rejects(publishOverlay(pair.v1.path, `${reg.host}/apps/counter:v1`, wrong), (e: unknown) =>
        isCloudletError(e, 'Unauthorized') && /refused the username or password for "cloudlet"/.test(e.message) && !e.message.includes('not-the-password'));
      await assert.rejects(pullOverlay(`${reg.host}/apps/counter:v1`, path.join(work, 'x.overlay'), { ...wrong, cacheDir }),
        (e: unknown) => isCloudletError(e, 'Unauthorized'));
      await assert.rejects(pullOverlay(`${reg.host}/apps/counter:v1`, path.join(work, 'x.overlay'), { credentials: null, ca: reg.caPem, cacheDir }),
        (e: unknown) => isCloudletError(e, 'Unauthorized') && /requires a login/.test(e.message));
      assert.deepEqual(new BlobCache(cacheDir).list(), []);
      assert.ok(!fs.existsSync(path.join(work, 'x.overlay')));
    });

    it('CLI: a wrong stored password gives one clear line and exit 1, never the password', async () => {
      const dockerDir = path.join(work, 'docker-wrong');
      fs.mkdirSync(dockerDir);
      fs.writeFileSync(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:Wr0ngSecret`).toString('base64') } } }));
      const r = await runCli(['overlay', 'publish', pair.v1.path, `${reg.host}/apps/counter:v1`, '--ca', reg.caFile!],
        { DOCKER_CONFIG: dockerDir, CLOUDLET_HOME: path.join(work, 'home-wrong') });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /refused the username or password/);
      assert.match(r.stderr, /cloudlet registry login/);
      assert.ok(!r.stderr.includes('Wr0ngSecret') && !r.stdout.includes('Wr0ngSecret'));
    });

    it('a daemon pulling with its operator\'s own login never names that username in a refusal (review12 F8)', async () => {
      const dockerDir = path.join(work, 'docker-operator');
      fs.mkdirSync(dockerDir);
      fs.writeFileSync(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:Wr0ngSecret`).toString('base64') } } }));
      const saved = process.env.DOCKER_CONFIG;
      process.env.DOCKER_CONFIG = dockerDir;
      try {
        await assert.rejects(pullOverlay(`${reg.host}/apps/counter:v1`, path.join(work, 'z.overlay'), { lookedUpLoginIsPrivate: true, ca: reg.caPem, cacheDir: path.join(work, 'c-op') }),
          (e: unknown) => isCloudletError(e, 'Unauthorized') && /refused the cloudlet's login/.test(e.message)
            && !e.message.includes(`"${reg.username}"`) && !e.message.includes('Wr0ngSecret') && e.hint === undefined);
        // The same looked-up login on a user's own machine (the CLI) is named, with the way to fix it.
        await assert.rejects(pullOverlay(`${reg.host}/apps/counter:v1`, path.join(work, 'z.overlay'), { ca: reg.caPem, cacheDir: path.join(work, 'c-op') }),
          (e: unknown) => isCloudletError(e, 'Unauthorized') && e.message.includes(`"${reg.username}"`) && /cloudlet registry login/.test(e.hint ?? ''));
      } finally {
        if (saved === undefined) delete process.env.DOCKER_CONFIG; else process.env.DOCKER_CONFIG = saved;
      }
    });

    it('refuses a registry whose TLS certificate is not trusted, saying which option fixes it', async () => {
      await assert.rejects(pullOverlay(`${reg.host}/apps/counter:v1`, path.join(work, 'y.overlay'), { credentials: null, cacheDir: path.join(work, 'c-tls') }),
        (e: unknown) => isCloudletError(e) && /TLS certificate of registry .* is not trusted/.test(e.message) && /--ca/.test(e.hint ?? ''));
    });
  });

  describe('registry down and connections cut (plain)', () => {
    let reg: RegistryFixture;
    let proxy: TcpProxy;
    before(async () => {
      reg = await startRegistry();
      proxy = await startTcpProxy('127.0.0.1', reg.port);
    });
    after(async () => { await proxy?.close(); await reg?.close(); });

    it('registry down during a push: the upload resumes from the registry\'s offset when it is back', async () => {
      let killed = false;
      let restarted: Promise<void> | undefined;
      const report = await publishOverlay(pair.v1.path, `${reg.host}/resume/counter:v1`, {
        credentials: null, storeRoot: path.join(work, 'store-resume'), concurrency: 1, chunkSize: 64 * 1024,
        retry: { attempts: 10, baseDelayMs: 100, maxDelayMs: 800 },
        progress: (e) => {
          // Between two PATCHes of the second segment: kill -9 the registry, bring it back a second later.
          if (!killed && e.done !== undefined && e.done > 1.3 * 1048576) {
            killed = true;
            void reg.stop(true);
            restarted = new Promise((r) => setTimeout(r, 1000)).then(() => reg.start());
          }
        },
      });
      await restarted;
      assert.ok(killed);
      assert.ok(report.retries >= 1, 'no retry happened');
      assert.ok(report.resumes >= 1, 'no upload was resumed');
      assert.equal(report.restarts, 0, 'an upload started over instead of resuming');
      // Resumed, not re-sent: at most one chunk more than the overlay went over the wire.
      assert.ok(report.bytesSent < fs.statSync(pair.v1.path).size + 64 * 1024 + 8192, `sent ${report.bytesSent}`);
      const out = path.join(work, 'resumed.overlay');
      await pullOverlay(`${reg.host}/resume/counter:v1`, out, { credentials: null, cacheDir: path.join(work, 'cache-resume') });
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(pair.v1.path)));
    });

    it('connection cut during a pull: retried with back-off; cut for good: a clear error and a clean cache', async () => {
      await publishOverlay(pair.v1.path, `${reg.host}/cut/counter:v1`, { credentials: null, storeRoot: path.join(work, 'store-cut') });
      const ref = `${proxy.host}/cut/counter:v1`;

      // One cut in the middle of the segments: the pull retries and completes.
      const cacheA = path.join(work, 'cache-cut-a');
      proxy.cutAfter(1.5 * 1048576);
      const outA = path.join(work, 'cut-a.overlay');
      const ok = await pullOverlay(ref, outA, { credentials: null, cacheDir: cacheA, retry: FAST_RETRY });
      assert.equal(proxy.cuts, 1);
      assert.ok(ok.retries >= 1, 'the cut was not retried');
      assert.ok(fs.readFileSync(outA).equals(fs.readFileSync(pair.v1.path)));

      // Cut and refused from then on: bounded retries, then an error that says what failed.
      const cacheB = path.join(work, 'cache-cut-b');
      proxy.cutAfter(1.5 * 1048576, { refuse: true });
      const outB = path.join(work, 'cut-b.overlay');
      await assert.rejects(pullOverlay(ref, outB, { credentials: null, cacheDir: cacheB, retry: FAST_RETRY }), (e: unknown) =>
        isCloudletError(e, 'Unavailable') && /download of sha256:[0-9a-f]{64} from 127\.0\.0\.1:\d+\/cut\/counter failed after 4 attempts with back-off/.test(e.message));
      assert.ok(!fs.existsSync(outB) && !fs.existsSync(`${outB}.partial`), 'a partial overlay was left');
      assertCacheClean(cacheB);
    });
  });

  describe('content the registry serves wrongly', () => {
    let reg: RegistryFixture;
    before(async () => { reg = await startRegistry(); });
    after(async () => { await reg?.close(); });

    it('a blob altered inside the registry\'s storage: pull and synthesis refuse, naming the digest; nothing bad cached', async () => {
      await publishOverlay(pair.v1.path, `${reg.host}/tamper/counter:v1`, { credentials: null, storeRoot: path.join(work, 'store-tamper') });
      const victim = pair.v1.manifest.segments.find((s) => s.kind === 'chunks' && s.target === 'ram')!.digest;
      const blob = reg.blobPath(victim);
      const data = fs.readFileSync(blob);
      data[data.length >> 1] ^= 0x55;
      fs.writeFileSync(blob, data);

      const cacheDir = path.join(work, 'cache-tamper');
      const out = path.join(work, 'tampered.overlay');
      await assert.rejects(pullOverlay(`${reg.host}/tamper/counter:v1`, out, { credentials: null, cacheDir, retry: FAST_RETRY }),
        (e: unknown) => isCloudletError(e, 'Corrupt') && e.message.includes(victim) && /failed verification/.test(e.message));
      assert.ok(!fs.existsSync(out) && !fs.existsSync(`${out}.partial`));
      assert.ok(!new BlobCache(cacheDir).has(victim), 'the altered blob was cached');
      assertCacheClean(cacheDir);

      // Synthesis from the reference refuses the same way and leaves no launch folder.
      const o = await openOverlayFromOci(`oci://${reg.host}/tamper/counter:v1`, { credentials: null, cacheDir, retry: FAST_RETRY });
      const outDir = path.join(work, 'tampered-launch');
      try {
        await assert.rejects(applyOverlay(o, o.source, { baseId: pair.base.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir, threads: 1 }),
          (e: unknown) => isCloudletError(e, 'Corrupt') && e.message.includes(victim));
      } finally {
        await o.close();
      }
      assert.ok(!fs.existsSync(outDir));
      assert.ok(!new BlobCache(cacheDir).has(victim));
    });

    it('a reference to a plain OCI container image: refused as not an overlay', async () => {
      const client = new RegistryClient(reg.host, { credentials: null });
      try {
        const uploader = new BlobUploader(client, 'library/busybox');
        const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
        const layer = Buffer.from('not really a tarball, the registry does not look');
        await uploader.upload(config, sha256Digest(config));
        await uploader.upload(layer, sha256Digest(layer));
        const manifest = Buffer.from(JSON.stringify({
          schemaVersion: 2, mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256Digest(layer), size: layer.length }],
        }));
        await client.putManifest('library/busybox', 'latest', manifest, OCI_MANIFEST);
      } finally {
        await client.close();
      }
      const cacheDir = path.join(work, 'cache-image');
      const check = (e: unknown) => isCloudletError(e, 'BadInput')
        && /busybox:latest is not a Cloudlet overlay: it is an OCI container image/.test(e.message);
      await assert.rejects(pullOverlay(`${reg.host}/library/busybox:latest`, path.join(work, 'image.overlay'), { credentials: null, cacheDir }), check);
      await assert.rejects(openOverlayFromOci(`oci://${reg.host}/library/busybox`, { credentials: null, cacheDir }), check);
      assert.deepEqual(new BlobCache(cacheDir).list(), []);
      // And a reference to nothing at all.
      await assert.rejects(openOverlayFromOci(`oci://${reg.host}/library/nothing:v9`, { credentials: null, cacheDir }),
        (e: unknown) => isCloudletError(e, 'NotFound') && /library\/nothing:v9/.test(e.message));
    });
  });
});
