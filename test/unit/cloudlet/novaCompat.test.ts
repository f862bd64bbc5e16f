/**
 * Issue 14 item 3-4 at unit level (the unmodified clients drive the same in
 * test/integration/openstackClients.test.ts): addresses of servers with a VM, os-start, reboot,
 * console output, metadata items, limits, quotas, zones, key pairs, the version list and
 * microversion negotiation; over a fake VmBackend through the whole request path.
 */
import { strict as assert } from 'assert';
import { computeModule } from '../../../sandbox/cloudlet/api/compute';
import { imageModule } from '../../../sandbox/cloudlet/api/image';
import { CloudletError } from '../../../sandbox/common/errors';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';
import { FAKE_BASE, FakeVmBackend } from './fakeVmBackend';

describe('Nova compatibility routes over a fake VmBackend', () => {
  const backend = new FakeVmBackend();
  let d: UnitDaemon;
  const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}, user: 'alice' | 'bob' = 'alice') =>
    d.inject(user, { method, url: `/compute/v2.1${url}`, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
  let serverId: string;

  before(async () => {
    d = await startUnitDaemon([
      computeModule({ backend, maxServers: 3, overlayMaxBytes: 1 << 20, handoff: () => ({ start() { throw new CloudletError('BadInput', 'none'); }, routes() {}, async stop() {} }) }),
      imageModule({ maxUploadBytes: 1 << 20 }),
    ]);
    const images = (await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images as Array<{ id: string; base_sha256_uuid?: string }>;
    const res = await call('POST', '/servers', { server: { name: 'compat', imageRef: images.find((i) => i.base_sha256_uuid === FAKE_BASE)!.id, metadata: { ports: '22' } } });
    serverId = res.json().server.id;
    await d.daemon.jobs.wait(res.json().server['OS-EXT-CLOUDLET:job_id']);
  });
  after(async () => { await d.close(); });

  it('an ACTIVE server has an address on a network named for the cloudlet, in show and in the detailed list; accessIPv4 too', async () => {
    const s = (await call('GET', `/servers/${serverId}`)).json().server;
    const host = new URL(d.daemon.url).hostname;
    assert.deepEqual(s.addresses, { [`cloudlet-${host}`]: [{ version: 4, addr: '127.0.0.1', 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': '52:54:00:12:34:56' }] });
    assert.equal(s.accessIPv4, '127.0.0.1');
    const listed = (await call('GET', '/servers/detail')).json().servers;
    assert.deepEqual(listed[0].addresses, s.addresses);
  });

  it('os-stop then os-start continues the VM; reboot SOFT and HARD reset it and keep it ACTIVE; os-start of a running server is 409', async () => {
    assert.equal((await call('POST', `/servers/${serverId}/action`, { 'os-start': null })).statusCode, 409);
    assert.equal((await call('POST', `/servers/${serverId}/action`, { 'os-stop': null })).statusCode, 202);
    assert.equal((await call('GET', `/servers/${serverId}`)).json().server.status, 'SHUTOFF');
    assert.equal((await call('POST', `/servers/${serverId}/action`, { 'os-start': null })).statusCode, 202);
    assert.equal((await call('GET', `/servers/${serverId}`)).json().server.status, 'ACTIVE');
    for (const type of ['SOFT', 'HARD']) assert.equal((await call('POST', `/servers/${serverId}/action`, { reboot: { type } })).statusCode, 202);
    assert.deepEqual(backend.calls.slice(-4).map((c) => c.split(' ')[0]), ['stop', 'start', 'reboot', 'reboot']);
    assert.equal((await call('GET', `/servers/${serverId}`)).json().server.status, 'ACTIVE');
  });

  it('os-getConsoleOutput: the console log, cut to the last lines asked for', async () => {
    const all = (await call('POST', `/servers/${serverId}/action`, { 'os-getConsoleOutput': { length: null } })).json();
    assert.match(all.output, /^console of /);
    assert.equal((await call('POST', `/servers/${serverId}/action`, { 'os-getConsoleOutput': { length: 0 } })).json().output, '');
    assert.equal((await call('POST', `/servers/${serverId}/action`, { 'os-getConsoleOutput': { length: 'x' } })).statusCode, 400);
  });

  it('metadata items: merge, replace, one key, delete; limits on count; another project cannot', async () => {
    const merged = (await call('POST', `/servers/${serverId}/metadata`, { metadata: { role: 'web' } })).json().metadata;
    assert.equal(merged.role, 'web');
    assert.equal(merged.ports, '22', 'merged, not replaced');
    assert.deepEqual((await call('GET', `/servers/${serverId}/metadata/role`)).json(), { meta: { role: 'web' } });
    assert.equal((await call('PUT', `/servers/${serverId}/metadata/tier`, { meta: { tier: 'front' } })).statusCode, 200);
    assert.equal((await call('PUT', `/servers/${serverId}/metadata/tier`, { meta: { other: 'x' } })).statusCode, 400);
    assert.equal((await call('DELETE', `/servers/${serverId}/metadata/role`)).statusCode, 204);
    assert.equal((await call('DELETE', `/servers/${serverId}/metadata/role`)).statusCode, 404);
    const many = Object.fromEntries(Array.from({ length: 129 }, (_v, i) => [`k${i}`, 'v']));
    assert.equal((await call('PUT', `/servers/${serverId}/metadata`, { metadata: many })).statusCode, 400);
    assert.deepEqual((await call('PUT', `/servers/${serverId}/metadata`, { metadata: { only: 'this' } })).json().metadata, { only: 'this' });
    assert.equal((await call('POST', `/servers/${serverId}/metadata`, { metadata: { x: 'y' } }, {}, 'bob')).statusCode, 404);
  });

  it('limits, quota sets (own project; another is 403), availability zones', async () => {
    const abs = (await call('GET', '/limits')).json().limits.absolute;
    assert.equal(abs.maxTotalInstances, 3);
    assert.equal(abs.totalInstancesUsed, 1);
    assert.equal(abs.totalCoresUsed, 1);
    const token = (await d.inject('alice', { method: 'GET', url: '/identity/v3/auth/tokens', headers: { 'x-subject-token': await d.token('alice') } })).json().token;
    const q = (await call('GET', `/os-quota-sets/${token.project.id}`)).json().quota_set;
    assert.equal(q.instances, 3);
    const detail = (await call('GET', `/os-quota-sets/${token.project.id}/detail`)).json().quota_set;
    assert.deepEqual(detail.instances, { limit: 3, in_use: 1, reserved: 0 });
    assert.equal((await call('GET', '/os-quota-sets/someone-else')).statusCode, 403);
    assert.deepEqual((await call('GET', '/os-availability-zone')).json().availabilityZoneInfo.map((z: { zoneName: string }) => z.zoneName), ['nova']);
    assert.equal((await call('GET', '/os-availability-zone/detail')).statusCode, 403, 'the detail is for admins');
  });

  it('key pairs: import (fingerprint), generate (private key once), list, show, delete; a bad key is 400', async () => {
    const pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXbLQRbP2Q7m2iWgM3lCvXmH1iF7X3u7kR0m6h9U7uN test@host';
    const imported = (await call('POST', '/os-keypairs', { keypair: { name: 'mine', public_key: pub } })).json().keypair;
    assert.match(imported.fingerprint, /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
    assert.equal(imported.private_key, undefined);
    const made = (await call('POST', '/os-keypairs', { keypair: { name: 'made' } })).json().keypair;
    assert.match(made.private_key, /^-----BEGIN RSA PRIVATE KEY-----/);
    assert.match(made.public_key, /^ssh-rsa AAAAB3NzaC1yc2E/);
    assert.equal((await call('POST', '/os-keypairs', { keypair: { name: 'mine', public_key: pub } })).statusCode, 409);
    assert.equal((await call('POST', '/os-keypairs', { keypair: { name: 'bad', public_key: 'ssh-rsa bm90IGEga2V5' } })).statusCode, 400);
    assert.deepEqual((await call('GET', '/os-keypairs')).json().keypairs.map((k: { keypair: { name: string } }) => k.keypair.name), ['made', 'mine']);
    assert.equal((await call('GET', '/os-keypairs', undefined, {}, 'bob')).json().keypairs.length, 0, 'per user');
    assert.equal((await call('GET', '/os-keypairs/mine')).json().keypair.public_key, pub);
    assert.equal((await call('DELETE', '/os-keypairs/mine')).statusCode, 202);
    assert.equal((await call('GET', '/os-keypairs/mine')).statusCode, 404);
  });

  it('microversions: 2.1 and latest are served, 2.79 and 3.0 are 406, a malformed one 400; the version list at /compute/', async () => {
    assert.equal((await call('GET', '/flavors', undefined, { 'openstack-api-version': 'compute 2.1' })).statusCode, 200);
    assert.equal((await call('GET', '/flavors', undefined, { 'x-openstack-nova-api-version': 'latest' })).statusCode, 200);
    for (const v of ['2.79', '3.0']) {
      const r = await call('GET', '/flavors', undefined, { 'openstack-api-version': `compute ${v}` });
      assert.equal(r.statusCode, 406, v);
      assert.match(r.body, /not supported by the API\. Minimum is 2\.1 and maximum is 2\.1/);
    }
    assert.equal((await call('GET', '/flavors', undefined, { 'x-openstack-nova-api-version': '2.x' })).statusCode, 400);
    const list = (await d.inject(undefined, { method: 'GET', url: '/compute/' })).json();
    assert.deepEqual(list.versions.map((v: { id: string; status: string }) => `${v.id} ${v.status}`), ['v2.0 SUPPORTED', 'v2.1 CURRENT']);
  });
});
