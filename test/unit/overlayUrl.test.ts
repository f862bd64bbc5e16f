/**
 * overlay_url is the caller's URL fetched by the daemon (issue 11 item 11): it reaches only the
 * address ranges of `overlay_url_networks` (literal addresses, names after DNS, every redirect hop,
 * oci:// registries), and until the answer is an overlay every failure reads the same, so a member
 * cannot tell a closed port from a 404 from a web page (an internal-network probe).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { AddressPolicy } from '../../sandbox/common/addressPolicy';
import { isCloudletError } from '../../sandbox/common/errors';
import { createLogger } from '../../sandbox/common/log';
import { parseConfig } from '../../sandbox/cloudlet/config';
import { fetchOverlayManifest } from '../../sandbox/cloudlet/overlayFetch';
import { openOciOverlay, ownImageId } from '../../sandbox/cloudlet/overlaySource';

interface Served { url: string; hits: string[]; close(): Promise<void> }

async function serve(host: string, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Served> {
  const hits: string[] = [];
  const s = http.createServer((req, res) => { hits.push(req.url ?? ''); handler(req, res); });
  await new Promise<void>((r) => s.listen(0, host, r));
  return { url: `http://${host}:${(s.address() as net.AddressInfo).port}`, hits, close: () => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); }) };
}

async function closedPort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** An oci:// open as a member without a login would make it. */
const ANONYMOUS = { credentials: null, project: 'p1' };

const refusal = async (p: Promise<unknown>): Promise<Error & { code?: string }> => {
  const e = await p.then(() => undefined, (x: unknown) => x);
  assert.ok(isCloudletError(e), `not refused with a CloudletError: ${String(e)}`);
  return e;
};

describe('overlay_url: address ranges and no probe oracle', function () {
  this.timeout(60_000);
  const logs: string[] = [];
  const log = createLogger('test', (l) => logs.push(l));
  const servers: Served[] = [];
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-url-')); });
  after(async () => { for (const s of servers) await s.close(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('the address policy: public, loopback, private, link-local and CIDR entries; IPv4-mapped IPv6 is IPv4', () => {
    const def = new AddressPolicy(['public', 'loopback']);
    for (const ok of ['8.8.8.8', '2606:4700::1111', '127.0.0.5', '::1', '::ffff:808:808']) assert.ok(def.allows(ok), ok);
    for (const no of ['10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', 'fd00::1', 'fe80::1', '::ffff:10.0.0.1', '::ffff:a00:1', '::ffff:a9fe:a9fe', '0.0.0.0', '224.0.0.1', '::', 'not-an-ip']) {
      assert.ok(!def.allows(no), no);
    }
    const narrow = new AddressPolicy(['10.9.0.0/16', 'link-local']);
    assert.ok(narrow.allows('10.9.4.4') && narrow.allows('169.254.1.1') && !narrow.allows('10.8.0.1') && !narrow.allows('8.8.8.8'));
    assert.throws(() => parseConfig('overlay_url_networks: [public, "10.0.0.0/33"]', 'c.yaml'), /c\.yaml: overlay_url_networks: "10\.0\.0\.0\/33" is not an address range/);
    assert.throws(() => parseConfig('overlay_url_networks: intranet', 'c.yaml'), /overlay_url_networks must be a list/);
    assert.deepEqual(parseConfig('{}').overlay_url_networks, ['public', 'loopback']);
  });

  it('a closed port, a 404, a 500 and a web page give the same refusal; the daemon log has the reasons', async () => {
    const notFound = await serve('127.0.0.2', (_q, r) => { r.statusCode = 404; r.end('no'); });
    const broken = await serve('127.0.0.2', (_q, r) => { r.statusCode = 500; r.end('boom'); });
    const page = await serve('127.0.0.2', (_q, r) => { r.setHeader('content-type', 'text/html'); r.end('<html>intranet wiki</html>'); });
    servers.push(notFound, broken, page);
    const targets = [`http://127.0.0.2:${await closedPort('127.0.0.2')}/x.overlay`, `${notFound.url}/x.overlay`, `${broken.url}/x.overlay`, `${page.url}/x.overlay`];
    const answers = new Set<string>();
    for (const url of targets) {
      const e = await refusal(fetchOverlayManifest(url, {}, 1 << 30, undefined, { log }));
      answers.add(`${e.code} ${e.message.replace(url, 'URL')}`);
    }
    assert.deepEqual([...answers], ['BadInput overlay_url URL: no cloudlet overlay could be read there']);
    const logged = logs.join('\n');
    for (const reason of [/cannot be fetched/, /answered 404/, /answered 500/, /is no overlay: not a cloudlet overlay/]) assert.match(logged, reason);
  });

  it('refuses addresses outside the ranges: literal, by name, after a redirect; nothing is contacted there', async () => {
    const policy = new AddressPolicy(['127.0.0.2/32']);
    const inside = await serve('127.0.0.2', (req, r) => { r.statusCode = 302; r.setHeader('location', req.url!.slice(1)); r.end(); });
    const outside = await serve('127.0.0.3', (_q, r) => r.end('secret'));
    const local = await serve('127.0.0.1', (_q, r) => r.end('secret'));
    servers.push(inside, outside, local);
    const port = new URL(local.url).port;
    for (const url of [`${outside.url}/x`, `http://localhost:${port}/x`, `${inside.url}/${outside.url}/x`]) {
      const e = await refusal(fetchOverlayManifest(url, {}, 1 << 30, undefined, { policy, log }));
      assert.match(e.message, /leads to an address this cloudlet may not fetch from/, url);
    }
    assert.deepEqual(outside.hits, [], 'the address outside the ranges was contacted');
    assert.deepEqual(local.hits, [], 'a name resolving outside the ranges was contacted');
    assert.equal(inside.hits.length, 1, 'the redirecting server inside the ranges was asked once');
  });

  it('oci://: a registry outside the ranges is refused; before a registry answers, failures read the same', async () => {
    const outside = await serve('127.0.0.3', (_q, r) => r.end('{}'));
    const notRegistry = await serve('127.0.0.2', (_q, r) => { r.statusCode = 404; r.end('<html>not here</html>'); });
    servers.push(outside, notRegistry);
    const e = await refusal(openOciOverlay(`oci://${new URL(outside.url).host}/team/app:v1`, tmp, 1 << 30, { policy: new AddressPolicy(['127.0.0.2/32']), log }, ANONYMOUS));
    assert.match(e.message, /leads to an address this cloudlet may not fetch from/);
    assert.deepEqual(outside.hits, []);
    const answers = new Set<string>();
    for (const host of [new URL(notRegistry.url).host, `127.0.0.2:${await closedPort('127.0.0.2')}`]) {
      const ref = `oci://${host}/team/app:v1`;
      const x = await refusal(openOciOverlay(ref, tmp, 1 << 30, { log }, ANONYMOUS));
      answers.add(x.message.replace(ref, 'REF'));
    }
    assert.deepEqual([...answers], ['overlay_url REF: no cloudlet overlay could be read there']);
  });
});

describe('overlay_url of the daemon\'s own image service', () => {
  const svc = 'http://127.0.0.2:8774';
  const id = '0b7f5a4e-3c1d-4e2f-9a8b-1c2d3e4f5a6b';
  it('is recognised only as exactly <image service>/v2/images/<UUID>/file', () => {
    assert.equal(ownImageId(new URL(`${svc}/v2/images/${id}/file`), svc), id);
    assert.equal(ownImageId(new URL(`${svc}/v2/images/${id}/file`), `${svc}/`), id, 'a catalog URL with a trailing slash');
    for (const other of [
      `${svc}/v2/images/${id}/file?x=1`, `${svc}/v2/images/${id}/file#f`, `http://u:p@127.0.0.2:8774/v2/images/${id}/file`,
      `${svc}/v2/images/${id}`, `${svc}/v2/images/${id}/file/x`, `${svc}/v2/images/not-a-uuid/file`,
      `${svc}/v2/images/..%2F..%2Fetc/file`, `http://127.0.0.3:8774/v2/images/${id}/file`, `https://127.0.0.2:8774/v2/images/${id}/file`,
      `${svc}/x/v2/images/${id}/file`,
    ]) assert.equal(ownImageId(new URL(other), svc), undefined, other);
  });
});
