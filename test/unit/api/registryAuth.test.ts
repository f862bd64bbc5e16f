/**
 * `cloudlet:registry_auth` on a server create (a caller's own login to an oci:// overlay_url's
 * registry): a closed, size-capped object, only with an oci:// overlay_url; anything else is a 400
 * naming the field, no server is made, and the password is never echoed in the answer or logged.
 * Which login a pull uses when the request brings none (registryCredentialsFor) and the
 * registry_logins setting that grants the daemon's own login to projects.
 */
import { strict as assert } from 'assert';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';
import { registryCredentialsFor } from '../../../sandbox/cloudlet/servers/serverLifecycle';
import { parseConfig } from '../../../sandbox/cloudlet/config';
import { Credentials } from '../../../sandbox/registry/credentials';
import { isCloudletError } from '../../../sandbox/common/errors';

const SECRET = 'S3cret-never-echoed';
const OCI = 'oci://127.0.0.1:9/team/app:v1';

describe('server create: cloudlet:registry_auth', function () {
  this.timeout(60_000);
  let d: UnitDaemon;
  before(async () => { d = await startUnitDaemon(undefined); });
  after(async () => { await d?.close(); });

  const create = (auth: unknown, overlayUrl: string | null = OCI) => d.inject('alice', {
    method: 'POST', url: '/compute/v2.1/servers',
    payload: { server: { name: 'x', metadata: overlayUrl === null ? {} : { overlay_url: overlayUrl } }, 'cloudlet:registry_auth': auth },
  });

  it('refuses unknown fields, oversized or missing values and wrong types with a 400 naming the field; no server is made', async () => {
    const cases: [unknown, RegExp][] = [
      [{ username: 'u', password: SECRET, token: 'x' }, /cloudlet:registry_auth\.token is not a known field/],
      [{ username: 'u'.repeat(256), password: SECRET }, /cloudlet:registry_auth\.username/],
      [{ username: 'u', password: 'p'.repeat(4097) }, /cloudlet:registry_auth\.password/],
      [{ username: 'u' }, /cloudlet:registry_auth\.password is missing/],
      [{ password: SECRET }, /cloudlet:registry_auth\.username is missing/],
      [{ username: 'u', password: '' }, /cloudlet:registry_auth\.password/],
      [{ username: 'u', password: 7 }, /cloudlet:registry_auth\.password must be a string/],
      ['u:p', /cloudlet:registry_auth must be an object/],
      [{ username: 'a:b', password: SECRET }, /cannot contain ':'/],
    ];
    for (const [auth, hint] of cases) {
      const r = await create(auth);
      assert.equal(r.statusCode, 400, `${JSON.stringify(auth).slice(0, 80)}: ${r.body}`);
      assert.equal(r.json().cloudlet_error.code, 'BadInput');
      assert.match(r.body, hint);
      assert.ok(!r.body.includes(SECRET), 'the password is not echoed');
    }
    assert.deepEqual((await d.inject('alice', { method: 'GET', url: '/compute/v2.1/servers' })).json().servers, []);
  });

  it('a mistyped login is never echoed in the 400: no value under registry_auth or a password key (review12 F7)', async () => {
    for (const auth of [`alice:${SECRET}`, { username: 'u', password: 12345678 }, { username: 'u', password: [SECRET] }, 12345678, [SECRET]]) {
      const r = await create(auth);
      assert.equal(r.statusCode, 400, r.body);
      assert.match(r.body, /cloudlet:registry_auth/);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes('12345678'), `echoed: ${r.body}`);
      assert.match(r.body, /value not shown/);
    }
  });

  it('is only for an oci:// overlay_url (an http one, or none, is refused: the login is for that registry alone)', async () => {
    for (const url of ['http://127.0.0.1:9/x.overlay', null]) {
      const r = await create({ username: 'u', password: SECRET }, url);
      assert.equal(r.statusCode, 400, r.body);
      assert.match(r.body, /only for a synthesis from an oci:\/\//);
    }
  });

  it('a well-formed login is taken (the unreachable registry answers), and its password is in no answer or log line', async () => {
    const r = await create({ username: 'someone', password: SECRET });
    assert.equal(r.statusCode, 400, r.body);
    assert.match(r.body, /no cloudlet overlay could be read there/);
    assert.ok(!r.body.includes(SECRET));
    assert.ok(!d.logs.some((l) => l.includes(SECRET)), 'no log line holds the password');
    assert.deepEqual((await d.inject('alice', { method: 'GET', url: '/compute/v2.1/servers' })).json().servers, []);
  });
});

describe('registryCredentialsFor: whose login an oci:// pull uses', () => {
  const member = { isAdmin: false, projectId: 'p-demo', projectName: 'demo' };
  const other = { isAdmin: false, projectId: 'p-other', projectName: 'other' };
  const admin = { isAdmin: true, projectId: 'p-admin', projectName: 'admin' };

  it('the request\'s own login first; else the daemon\'s for admins and granted projects only; else anonymous', () => {
    const given = new Credentials('u', SECRET);
    assert.equal(registryCredentialsFor(member, 'reg:5000', given), given);
    assert.equal(registryCredentialsFor(member, 'reg:5000', undefined), null, 'a member gets no daemon login by default');
    assert.equal(registryCredentialsFor(admin, 'reg:5000', undefined), undefined, 'an admin may use the daemon user\'s login');
    const logins = { 'reg:5000': ['demo'], 'other.example': ['p-other'] };
    assert.equal(registryCredentialsFor(member, 'REG:5000', undefined, logins, true), undefined, 'granted by project name (embedded identity)');
    assert.equal(registryCredentialsFor(other, 'reg:5000', undefined, logins, true), null, 'not granted for that registry');
    assert.equal(registryCredentialsFor(other, 'other.example', undefined, logins), undefined, 'granted by project ID');
    assert.equal(registryCredentialsFor(member, 'other.example', undefined, logins), null);
  });

  it('under Keystone (names not unique) entries match project IDs only, never a name (review12 F1)', () => {
    const logins = { 'reg:5000': ['demo', '5f0c0ffee'] };
    assert.equal(registryCredentialsFor(member, 'reg:5000', undefined, logins), null, 'a project NAMED like a granted name (another domain)');
    const namedLikeId = { isAdmin: false, projectId: 'aaaa', projectName: '5f0c0ffee' };
    assert.equal(registryCredentialsFor(namedLikeId, 'reg:5000', undefined, logins), null, 'a project NAMED like a granted ID');
    assert.equal(registryCredentialsFor(namedLikeId, 'reg:5000', undefined, logins, true), undefined, 'embedded identity: names are the operator\'s');
    assert.equal(registryCredentialsFor({ isAdmin: false, projectId: '5f0c0ffee', projectName: 'x' }, 'reg:5000', undefined, logins), undefined, 'the granted ID');
  });

  it('registry_logins in the config: a mapping of host[:port] to project lists, checked', () => {
    assert.deepEqual(parseConfig('registry_logins:\n  Reg.Example:5000: [demo, other]\n').registry_logins, { 'reg.example:5000': ['demo', 'other'] });
    assert.deepEqual(parseConfig('max_servers: 2\n').registry_logins, {});
    for (const bad of ['registry_logins: [a]', 'registry_logins:\n  reg: demo', 'registry_logins:\n  https://reg/x: [demo]', 'registry_logins:\n  reg: [1]']) {
      assert.throws(() => parseConfig(bad), (e: unknown) => isCloudletError(e, 'BadInput') && /registry_logins/.test((e as Error).message), bad);
    }
  });
});
