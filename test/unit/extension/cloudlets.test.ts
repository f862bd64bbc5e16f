import { strict as assert } from 'assert';
import { Cloudlets, secretKey, type CloudletConfig, type Connector } from '../../../extension/cloudlets';
import type { CloudletSession, Credentials } from '../../../extension/api';
import { CloudletError } from '../../../sandbox/client';

function setup(opts: { failLogin?: (c: Credentials) => boolean } = {}) {
  let list: CloudletConfig[] = [];
  const secrets = new Map<string, string>();
  const logins: Array<{ url: string; creds: Credentials }> = [];
  const connector: Connector = async (url, creds) => {
    logins.push({ url, creds });
    if (opts.failLogin?.(creds)) throw new CloudletError('Unauthorized', 'wrong password');
    return { endpoint: url } as unknown as CloudletSession;
  };
  const m = new Cloudlets(connector,
    { list: () => list, save: async (l) => { list = l; } },
    { get: async (k) => secrets.get(k), store: async (k, v) => { secrets.set(k, v); }, delete: async (k) => { secrets.delete(k); } },
    { url: async () => 'http://127.0.0.1:8774', credentials: () => ({ username: 'admin', password: 'local-pw', project: 'admin' }) },
    () => {});
  return { m, secrets, logins, list: () => list };
}

describe('extension cloudlet list and sessions', () => {
  it('add keeps the password in secret storage, not in the settings', async () => {
    const { m, secrets, list } = setup();
    await m.add({ name: 'edge1', url: 'http://127.0.0.2:8774/', username: 'alice', project: 'demo' }, 's3cret');
    assert.deepEqual(list(), [{ name: 'edge1', url: 'http://127.0.0.2:8774', username: 'alice', project: 'demo' }]);
    assert.ok(!JSON.stringify(list()).includes('s3cret'));
    assert.equal(secrets.get(secretKey('edge1')), 's3cret');
  });

  it('refuses bad names and URLs', async () => {
    const { m } = setup();
    await assert.rejects(m.add({ name: 'local', url: 'http://x', username: 'a', project: 'a' }, 'p'), /sandbox daemon/);
    await assert.rejects(m.add({ name: 'e', url: 'ftp://x', username: 'a', project: 'a' }, 'p'), /http/);
    await m.add({ name: 'e', url: 'http://127.0.0.2:1', username: 'a', project: 'a' }, 'p');
    await assert.rejects(m.add({ name: 'e', url: 'http://127.0.0.3:1', username: 'a', project: 'a' }, 'p'), /exists/);
  });

  it('sessions are cached; a failed login is not; forget/update make a new one', async () => {
    let bad = true;
    const { m, logins } = setup({ failLogin: (c) => c.password === 'wrong' && bad });
    await m.add({ name: 'e', url: 'http://127.0.0.2:1', username: 'a', project: 'a' }, 'wrong');
    await assert.rejects(m.session('e'), /wrong password/);
    await assert.rejects(m.session('e'), /wrong password/);
    assert.equal(logins.length, 2, 'a failed login is retried next time');
    await m.updateCredentials('e', 'a', 'right');
    await m.session('e'); await m.session('e');
    assert.equal(logins.length, 3);
    assert.equal(logins[2].creds.password, 'right');
    bad = false;
    m.forget('e');
    await m.session('e');
    assert.equal(logins.length, 4);
  });

  it('a fleet login stands for its regions (LOGIN/REGION), each a session of the one login in that region', async () => {
    let list: CloudletConfig[] = [];
    let logins = 0;
    const regionOf = new Map<CloudletSession, string>();
    const fleet = { endpoint: 'http://127.0.0.1:5000/v3', regions: () => ['edge2', 'edge1'],
      inRegion: (r: string) => { const x = { endpoint: fleet.endpoint } as unknown as CloudletSession; regionOf.set(x, r); return x; } } as unknown as CloudletSession;
    const m = new Cloudlets(async () => { logins++; return fleet; }, { list: () => list, save: async (l) => { list = l; } },
      { get: async () => 'pw', store: async () => {}, delete: async () => {} }, { url: async () => '', credentials: () => undefined }, () => {});
    await m.add({ name: 'fleet', url: 'http://127.0.0.1:5000/v3', username: 'alice', project: 'demo' }, 'pw');
    assert.deepEqual(m.list().map((c) => c.name), ['fleet'], 'before the first login it is one entry');
    await m.session('fleet');
    assert.deepEqual(list[0].regions, ['edge1', 'edge2'], 'the regions are kept in the settings entry');
    assert.deepEqual(m.list().map((c) => c.name), ['fleet/edge1', 'fleet/edge2']);
    assert.equal(m.find('fleet/edge2')?.fleet, 'fleet');
    m.forget();
    const e2 = await m.session('fleet/edge2');
    const e1 = await m.session('fleet/edge1');
    assert.equal(regionOf.get(e2), 'edge2');
    assert.equal(regionOf.get(e1), 'edge1');
    assert.equal(logins, 2, 'one login for both regions');
    await m.pin('fleet/edge1', 'keystone:5000', 'AB');
    assert.deepEqual(list[0].pins, { 'keystone:5000': 'AB' }, 'a pin goes to the fleet login');
    await m.remove('fleet/edge2');
    assert.deepEqual(list, [], 'removing a region removes the fleet login');
  });

  it('the local daemon is the cloudlet named "local"', async () => {
    const { m, logins } = setup();
    await m.session('local');
    assert.deepEqual(logins[0], { url: 'http://127.0.0.1:8774', creds: { username: 'admin', password: 'local-pw', project: 'admin' } });
  });

  it('remove drops the setting and the secret', async () => {
    const { m, secrets, list } = setup();
    await m.add({ name: 'e', url: 'http://127.0.0.2:1', username: 'a', project: 'a' }, 'p');
    await m.remove('e');
    assert.deepEqual(list(), []);
    assert.equal(secrets.size, 0);
    await assert.rejects(m.session('e'), /No cloudlet named e/);
  });
});
