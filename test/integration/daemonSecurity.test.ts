/**
 * Security rules of the daemon's compute and image APIs, through the real `cloudlet serve`:
 * project isolation, OpenStack error bodies for malformed JSON, overlay_url checks, size caps.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { startDaemon, type TestDaemon, testConfig, TEST_USERS } from './fixtures/daemon';
import { CloudletClient, ApiError } from '../../sandbox/client';
import { createOverlay, SegmentCompressor } from '../../sandbox/overlay';
import { makePair } from '../unit/helpers/generatedImages';
import { startRegistry } from './fixtures/registry';
import { fetchOverlayManifest } from '../../sandbox/cloudlet/overlayFetch';

describe('cloudlet daemon: security', function () {
  let d: TestDaemon;
  let alice: CloudletClient, bob: CloudletClient;
  let tmp: string;
  let overlayFile: string;
  let overlayBase: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-sec-'));
    // A valid overlay whose base no test daemon holds.
    const pair = makePair(path.join(tmp, 'pair'), { ramPages: 256, diskChunks: 2048 });
    const compressor = new SegmentCompressor(1);
    overlayFile = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'ov'), compressor })).path;
    await compressor.close?.();
    overlayBase = pair.baseId;
    d = await startDaemon({ ip: '127.0.0.2', config: testConfig({ overlay_max_bytes: 64 * 1024 * 1024 }) });
    alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    bob = await CloudletClient.login({ authUrl: d.authUrl, username: 'bob', password: TEST_USERS.bob, project: 'other' });
  });
  after(async () => { await d?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  async function uploadOverlay(c: CloudletClient, name: string): Promise<string> {
    const img = await c.createImage({ name, cloudlet_type: 'cloudlet_overlay' });
    await c.uploadImageData(img.id, new Uint8Array(fs.readFileSync(overlayFile)));
    return img.id;
  }

  it('answers every API with 401 when there is no token', async () => {
    for (const p of ['/compute/v2.1/servers', '/image/v2/images', '/cloudlet/v1/jobs']) {
      const r = await fetch(d.url + p);
      assert.equal(r.status, 401, p);
      assert.equal(((await r.json()) as any).error.code, 401);
    }
  });

  it('keeps project B away from project A\'s images', async () => {
    const id = await uploadOverlay(alice, 'alice-overlay');
    const img = await alice.getImage(id);
    assert.equal(img.status, 'active');
    assert.equal(img.cloudlet_type, 'cloudlet_overlay');
    assert.equal(img.base_sha256_uuid, overlayBase, 'base ID read from the uploaded manifest');
    assert.ok(!(await bob.listImages()).some((i) => i.id === id));
    await assert.rejects(bob.getImage(id), (e: ApiError) => e.httpStatus === 404);
    await assert.rejects(bob.deleteImage(id), (e: ApiError) => e.httpStatus === 404);
    await assert.rejects(bob.downloadImageData(id), (e: ApiError) => e.httpStatus === 404);
    // carol, same project as alice, sees it
    const carol = await CloudletClient.login({ authUrl: d.authUrl, username: 'carol', password: TEST_USERS.carol, project: 'demo' });
    assert.equal((await carol.getImage(id)).id, id);
  });

  it('keeps project B away from project A\'s servers', async () => {
    // A server row exists whatever the VM layer does with it (it may go ERROR without a base).
    const id = await uploadOverlay(alice, 'for-server');
    const r = await fetch(`${alice.endpoint('compute')}/servers`, { method: 'POST', headers: { 'x-auth-token': alice.token, 'content-type': 'application/json' },
      body: JSON.stringify({ server: { name: 'a1', flavorRef: '1', metadata: { overlay_url: `${alice.endpoint('image')}/v2/images/${id}/file` } } }) });
    assert.equal(r.status, 400, 'the overlay\'s base is missing here');
    // Make a server row through the isolation-relevant path: alice's server list vs bob's.
    assert.deepEqual((await bob.listServers()).map((s) => s.id), []);
    await assert.rejects(bob.getServer('00000000-0000-0000-0000-000000000000'), (e: ApiError) => e.httpStatus === 404);
  });

  it('reads an overlay of its own image service only for callers who may read that image, with a download\'s words otherwise', async () => {
    // Its own image URLs are read where the image store keeps them (no download from itself): the
    // caller's access is the image GET's, and a refusal tells nothing about the image.
    const id = await uploadOverlay(alice, 'alices-own');
    const url = `${alice.endpoint('image')}/v2/images/${id}/file`;
    const unknown = `${alice.endpoint('image')}/v2/images/00000000-0000-4000-8000-000000000000/file`;
    const words: string[] = [];
    for (const u of [url, unknown]) {
      await assert.rejects(bob.createServer({ name: 'b1', overlayUrl: u }), (e: ApiError) => {
        assert.equal(e.httpStatus, 400);
        assert.match(e.message, /no cloudlet overlay could be read there/);
        assert.ok(!e.message.includes(overlayBase), 'nothing of alice\'s overlay is told to bob');
        words.push(e.message.replace(u, 'URL'));
        return true;
      });
    }
    assert.equal(words[0], words[1], 'another project\'s image reads like no image at all');
    // Alice herself gets past the access check to the overlay's content (its base is not here).
    await assert.rejects(alice.createServer({ name: 'a2', overlayUrl: url }), (e: ApiError) => e.httpStatus === 400 && e.message.includes(overlayBase));
    // An image without data yet reads the same as none.
    const empty = await alice.createImage({ name: 'empty', cloudlet_type: 'cloudlet_overlay' });
    await assert.rejects(alice.createServer({ name: 'a3', overlayUrl: `${alice.endpoint('image')}/v2/images/${empty.id}/file` }), (e: ApiError) => e.httpStatus === 400 && /no cloudlet overlay could be read there/.test(e.message));
    assert.deepEqual([...await alice.listServers(), ...await bob.listServers()], [], 'no server left behind');
  });

  it('answers malformed JSON with 400 and the service\'s OpenStack error body', async () => {
    const nova = await fetch(`${alice.endpoint('compute')}/servers`, { method: 'POST', headers: { 'x-auth-token': alice.token, 'content-type': 'application/json' }, body: '{"server": {' });
    assert.equal(nova.status, 400);
    const nb = (await nova.json()) as any;
    assert.equal(nb.badRequest.code, 400);
    assert.match(nb.badRequest.message, /JSON/);
    // Glance answers in JSON to a client that asks for it (and in HTML, as webob does, to one that does not).
    const glance = await fetch(`${alice.endpoint('image')}/v2/images`, { method: 'POST', headers: { 'x-auth-token': alice.token, 'content-type': 'application/json', accept: 'application/json' }, body: '[1,' });
    assert.equal(glance.status, 400);
    const gb = (await glance.json()) as any;
    assert.equal(gb.code, '400 Bad Request');
    assert.match(gb.message, /JSON/);
  });

  it('refuses an overlay_url whose scheme is not http(s)/oci, naming it', async () => {
    for (const url of ['ftp://127.0.0.1/x.overlay', 'file:///etc/passwd']) {
      await assert.rejects(alice.createServer({ name: 'x', overlayUrl: url }), (e: ApiError) => {
        assert.equal(e.httpStatus, 400);
        assert.match(e.message, new RegExp(`scheme "${url.split(':')[0]}"`));
        return true;
      });
    }
  });

  it('refuses an overlay whose base this cloudlet lacks, naming the base', async () => {
    const id = await uploadOverlay(alice, 'no-base');
    await assert.rejects(alice.createServer({ name: 'x', overlayUrl: `${alice.endpoint('image')}/v2/images/${id}/file` }), (e: ApiError) => {
      assert.equal(e.httpStatus, 400);
      assert.ok(e.message.includes(overlayBase), e.message);
      return true;
    });
    assert.deepEqual(await alice.listServers(), [], 'no server left behind');
  });

  it('serves image data with Range (206) and refuses ranges outside it (416)', async () => {
    const id = await uploadOverlay(alice, 'ranged');
    const whole = fs.readFileSync(overlayFile);
    const r = await alice.downloadImageData(id, { range: [10, 99] });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), `bytes 10-99/${whole.length}`);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), whole.subarray(10, 100));
    await assert.rejects(alice.downloadImageData(id, { range: [whole.length + 10] }), (e: ApiError) => e.httpStatus === 416);
  });

  it('refuses a client-chosen image id that is not a UUID, and ids that walk out of the images folder', async () => {
    const img = (p: string, method: string, body?: string, type = 'application/json') => fetch(`${alice.endpoint('image')}${p}`,
      { method, headers: { 'x-auth-token': alice.token, 'content-type': type, accept: 'application/json' }, body });
    for (const id of ['../x', '../cloudlet.db', 'x/../../y', 'not-a-uuid']) {
      const r = await img('/v2/images', 'POST', JSON.stringify({ name: 'evil', id }));
      assert.equal(r.status, 400, id);
      assert.match(JSON.stringify(await r.json()), /UUID/);
    }
    const db = path.join(d.dataDir, 'cloudlet.db');
    const before = fs.statSync(db).size;
    for (const enc of ['..%2Fcloudlet.db', '..%2F..%2Fescaped', '%2E%2E%2Fcloudlet.db']) {
      for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['GET', '/file']] as const) {
        const r = await img(`/v2/images/${enc}${suffix}`, method);
        assert.ok(r.status === 400 || r.status === 404, `${method} ${enc}${suffix}: ${r.status}`);
      }
      const put = await img(`/v2/images/${enc}/file`, 'PUT', 'overwritten', 'application/octet-stream');
      assert.ok(put.status === 400 || put.status === 404, `PUT ${enc}: ${put.status}`);
    }
    assert.ok(fs.existsSync(db) && fs.statSync(db).size >= before, 'the database is still there');
    assert.ok(!fs.existsSync(path.join(d.dataDir, '..', 'escaped')));
    // A UUID chosen by the client is still fine, as in Glance.
    const id = '0b5e2f6a-3c1d-4e8f-9a7b-1c2d3e4f5a6b';
    assert.equal((await alice.createImage({ name: 'chosen', id })).id, id);
  });

  it('sends a project\'s job events to that project (and admins) only, and unowned events to admins only', async () => {
    const admin = await CloudletClient.login({ authUrl: d.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' });
    const ac = new AbortController();
    const seen: Record<string, Array<{ topic: string; data: Record<string, unknown> }>> = { bob: [], admin: [] };
    const watching = [bob.watchEvents((e) => seen.bob.push(e), ac.signal).catch(() => undefined),
      admin.watchEvents((e) => seen.admin.push(e), ac.signal).catch(() => undefined)];
    try {
      await new Promise((r) => setTimeout(r, 300));
      const id = await uploadOverlay(alice, 'events-job');
      // A cheap job: publishing to a registry nobody listens on fails after a few retries.
      const r = await fetch(`${d.url}/sandbox/v1/overlays/${id}/publish`, { method: 'POST', headers: { 'x-auth-token': alice.token, 'content-type': 'application/json' },
        body: JSON.stringify({ publish: { reference: '127.0.0.1:9/nobody/here:v1', username: 'u', password: 'p' } }) });
      assert.equal(r.status, 202, await r.clone().text());
      const jobId = ((await r.json()) as any).job_id as string;
      await alice.watchJob(jobId);
      await new Promise((res) => setTimeout(res, 300));
      const jobEvents = (who: string) => seen[who].filter((e) => e.topic === 'jobs' && e.data.id === jobId);
      assert.deepEqual(jobEvents('bob'), [], 'bob sees nothing of alice\'s job');
      assert.ok(jobEvents('admin').length >= 2, `admin sees the job start and end: ${JSON.stringify(seen.admin)}`);
      assert.ok(jobEvents('admin').every((e) => e.data.project_id === alice.session.projectId), `job events name their project: ${JSON.stringify(jobEvents('admin'))}`);
      assert.deepEqual(seen.bob.filter((e) => e.data.project_id !== bob.session.projectId), [], `bob sees only his project's events: ${JSON.stringify(seen.bob)}`);
    } finally { ac.abort(); await Promise.all(watching); }
  });

  it('filters servers by name as a plain substring: a pattern that is no valid regex, or a catastrophic one, is just text', async () => {
    for (const name of ['(', '(a+)+$', '[']) {
      const r = await fetch(`${alice.endpoint('compute')}/servers/detail?name=${encodeURIComponent(name)}`, { headers: { 'x-auth-token': alice.token } });
      assert.equal(r.status, 200, `${name}: ${r.status}`);
      assert.deepEqual(((await r.json()) as any).servers, []);
    }
  });

  it('reads an overlay manifest from a Range server taking only the bytes it asked for, whatever the server sends', async () => {
    const whole = fs.readFileSync(overlayFile);
    const sent: number[] = [];
    const srv = http.createServer((req, res) => {
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')!;
      const start = Number(m[1]);
      if (start === 0) {  // a short first answer, so the manifest needs a second request
        res.writeHead(206, { 'content-range': `bytes 0-19/${whole.length}`, 'content-length': 20 });
        res.end(whole.subarray(0, 20));
        return;
      }
      // The second answer goes on for ever past the range asked for.
      res.writeHead(206, { 'content-range': `bytes ${start}-${m[2]}/${whole.length}` });
      res.write(whole.subarray(start));
      const more = () => { if (!res.destroyed) { sent.push(1); res.write(Buffer.alloc(1 << 20), () => setImmediate(more)); } };
      more();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(srv.address() as any).port}/ov`;
      const m = await Promise.race([fetchOverlayManifest(url, {}, 1 << 30),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('still reading the endless answer after 5 s')), 5000))]);
      assert.equal(m.manifest.baseId, overlayBase);
    } finally { srv.closeAllConnections(); srv.close(); }
  });

  it('lets only admins make or fill a base-disk image (POST, PATCH and upload)', async () => {
    const own = await alice.createImage({ name: 'plain' });
    const patch = await fetch(`${alice.endpoint('image')}/v2/images/${own.id}`, { method: 'PATCH',
      headers: { 'x-auth-token': alice.token, 'content-type': 'application/openstack-images-v2.1-json-patch' },
      body: JSON.stringify([{ op: 'add', path: '/cloudlet_type', value: 'cloudlet_base_disk' }]) });
    assert.equal(patch.status, 403);
    assert.equal((await alice.getImage(own.id)).cloudlet_type, undefined, 'type unchanged');
    // An admin makes a base-disk image in alice's project; alice owns it but may not upload (import) into it.
    const admin = await CloudletClient.login({ authUrl: d.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'demo' });
    const base = await admin.createImage({ name: 'base-slot', cloudlet_type: 'cloudlet_base_disk', visibility: 'private' });
    await assert.rejects(alice.uploadImageData(base.id, new Uint8Array(1000)), (e: ApiError) => e.httpStatus === 403);
    assert.equal((await admin.getImage(base.id)).status, 'queued', 'nothing imported');
  });
});

describe('cloudlet daemon: publishing with the daemon\'s own registry login', function () {
  it('lets only admins publish with the daemon user\'s Docker credentials; a member without credentials goes anonymous', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-pubcred-'));
    const reg = await startRegistry({ auth: true, tls: true });
    let d: TestDaemon | undefined;
    try {
      const pair = makePair(path.join(tmp, 'pair'), { ramPages: 256, diskChunks: 2048 });
      const compressor = new SegmentCompressor(1);
      const ov = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'ov'), compressor })).path;
      await compressor.close?.();
      const dockerDir = path.join(tmp, 'docker');
      fs.mkdirSync(dockerDir);
      fs.writeFileSync(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }), { mode: 0o600 });
      d = await startDaemon({ ip: '127.0.0.2', env: { DOCKER_CONFIG: dockerDir, CLOUDLET_REGISTRY_CA: reg.caFile! } });
      const publish = async (c: CloudletClient, tag: string) => {
        const img = await c.createImage({ name: tag, cloudlet_type: 'cloudlet_overlay' });
        await c.uploadImageData(img.id, new Uint8Array(fs.readFileSync(ov)));
        const r = await fetch(`${d!.url}/sandbox/v1/overlays/${img.id}/publish`, { method: 'POST', headers: { 'x-auth-token': c.token, 'content-type': 'application/json' },
          body: JSON.stringify({ publish: { reference: `${reg.host}/team/overlays:${tag}` } }) });
        assert.equal(r.status, 202, await r.clone().text());
        return c.watchJob(((await r.json()) as any).job_id);
      };
      const member = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const m = await publish(member, 'member');
      assert.equal(m.status, 'ERROR', 'a member without credentials is anonymous, and the registry wants a login');
      assert.match(m.error ?? '', /401|unauthori[sz]ed|login|credentials/i);
      const admin = await CloudletClient.login({ authUrl: d.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' });
      const ad = await publish(admin, 'admin');
      assert.equal(ad.status, 'DONE', `an admin's publish uses the daemon's login: ${ad.error}`);
    } finally { await d?.stop(); await reg.close(); fs.rmSync(tmp, { recursive: true, force: true }); }
  });
});

describe('cloudlet daemon: overlay size cap', function () {
  it('refuses to fetch or store an overlay over the cap', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-cap-'));
    const d = await startDaemon({ ip: '127.0.0.2', config: testConfig({ overlay_max_bytes: 4096 }) });
    const big = await startDaemon({ ip: '127.0.0.3' });
    try {
      const alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
      const img = await alice.createImage({ name: 'big' });
      await assert.rejects(alice.uploadImageData(img.id, new Uint8Array(10000)), (e: ApiError) => e.httpStatus === 413);
      assert.equal((await alice.getImage(img.id)).status, 'queued', 'nothing stored');
      // An overlay served by another cloudlet, larger than this one's cap.
      const other = await CloudletClient.login({ authUrl: big.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' });
      const pub = await other.createImage({ name: 'pub', visibility: 'public' });
      await other.uploadImageData(pub.id, new Uint8Array(100000).fill(7));
      // Glance needs a token there; the daemon forwards none to foreign URLs, so use a share-free path:
      const url = `${other.endpoint('image')}/v2/images/${pub.id}/file`;
      const r = await fetch(`${alice.endpoint('compute')}/servers`, { method: 'POST', headers: { 'x-auth-token': alice.token, 'content-type': 'application/json' },
        body: JSON.stringify({ server: { name: 'capped', metadata: { overlay_url: url } } }) });
      assert.equal(r.status, 400);
      void tmp;
    } finally { await d.stop(); await big.stop(); fs.rmSync(tmp, { recursive: true, force: true }); }
  });
});
