import { strict as assert } from 'assert';
import { Cloudlets, applicationCredentialOf, secretKey, validateLogin, type CloudletConfig, type Connector } from '../../../extension/cloudlets';
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
    await m.updateCredentials('e', { username: 'a' }, 'right');
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
      inRegion: (r: string) => { const x = { endpoint: fleet.endpoint, computeEndpoint: () => `http://${r}.example:8774/compute/v2.1` } as unknown as CloudletSession; regionOf.set(x, r); return x; } } as unknown as CloudletSession;
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
    // A region's servers answer on the region's host, not the Keystone's (wildcard-bound forwards).
    assert.equal(m.hostUrl('fleet/edge2'), 'http://edge2.example:8774/compute/v2.1');
    assert.equal(m.hostUrl('fleet'), 'http://127.0.0.1:5000/v3');
    await m.pin('fleet/edge1', 'keystone:5000', 'AB');
    assert.deepEqual(list[0].pins, { 'keystone:5000': 'AB' }, 'a pin goes to the fleet login');
    await m.remove('fleet/edge2');
    assert.deepEqual(list, [], 'removing a region removes the fleet login');
  });

  it('14.5: an application credential login keeps its secret in secret storage and logs in with it again after a 401', async () => {
    const { m, secrets, logins, list } = setup();
    await m.add({ name: 'ci', url: 'http://127.0.0.1:5000/v3', username: '', project: '', applicationCredential: { id: 'a1b2c3' } }, 'app-secret');
    assert.deepEqual(list(), [{ name: 'ci', url: 'http://127.0.0.1:5000/v3', username: '', project: '', applicationCredential: { id: 'a1b2c3' } }]);
    assert.ok(!JSON.stringify(list()).includes('app-secret'), 'the secret is not in the settings');
    assert.equal(secrets.get(secretKey('ci')), 'app-secret');
    await m.session('ci');
    assert.deepEqual(logins[0].creds, { username: '', password: 'app-secret', project: '', applicationCredential: { id: 'a1b2c3' } });
    // An expired token (a 401 makes the views forget the session): the stored secret logs in anew.
    m.forget('ci');
    await m.session('ci');
    assert.equal(logins.length, 2);
    assert.deepEqual(logins[1].creds, logins[0].creds);
    // Switching the login to a user's password drops the credential; the project comes back.
    await m.updateCredentials('ci', { username: 'alice', project: 'demo' }, 'pw');
    await m.session('ci');
    assert.deepEqual(logins[2].creds, { username: 'alice', password: 'pw', project: 'demo' });
    assert.equal(list()[0].applicationCredential, undefined);
    // ... and back to a credential named by name and owner.
    await m.updateCredentials('ci', { username: 'alice', applicationCredential: { name: 'ci-cred' } }, 's2');
    await m.session('ci');
    assert.deepEqual(logins[3].creds, { username: 'alice', password: 's2', project: '', applicationCredential: { name: 'ci-cred' } });
  });

  it('14.5: an application credential needs its ID, or its name and owner, and a secret; settings are checked', async () => {
    const { m, list } = setup();
    const app = (a: CloudletConfig['applicationCredential'], username = '') => ({ name: 'c', url: 'http://127.0.0.2:1', username, project: '', applicationCredential: a });
    await assert.rejects(m.add(app({}), 's'), /by its ID, or by its name and its user/);
    await assert.rejects(m.add(app({ name: 'ci' }), 's'), /user who owns application credential ci/);
    await assert.rejects(m.add(app({ id: 'a b' }), 's'), /no spaces/);
    await assert.rejects(m.add(app({ id: 'abc' }), ''), /secret is needed/);
    await assert.rejects(m.updateCredentials('c', { username: '', applicationCredential: { name: 'x' } }, 's'), /user who owns/);
    assert.deepEqual(list(), [], 'nothing half-saved');
    assert.equal(validateLogin({ username: 'alice' }), undefined);
    assert.equal(validateLogin({ username: ' ' }), 'A user name is needed');
    // From settings.json (hostile): only a string id or name survives.
    assert.deepEqual(applicationCredentialOf({ id: ' abc ', name: 'n' }), { id: 'abc' });
    assert.deepEqual(applicationCredentialOf({ id: 3, name: 'n' }), { name: 'n' });
    for (const bad of [undefined, null, 'abc', {}, { id: '' }, { name: 'x'.repeat(256) }]) assert.equal(applicationCredentialOf(bad), undefined, JSON.stringify(bad));
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
