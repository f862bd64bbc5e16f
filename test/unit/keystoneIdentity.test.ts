/**
 * KeystoneIdentity's rules against a scripted Keystone (the real one is in
 * test/integration/fleet.test.ts): cache bound, expiry, revocation, role mapping, service token
 * renewal, Keystone down.
 */
import { strict as assert } from 'assert';
import { KeystoneIdentity } from '../../sandbox/cloudlet/keystoneIdentity';
import { parseConfig, type KeystoneIdentityConfig } from '../../sandbox/cloudlet/config';
import { CloudletError } from '../../sandbox/common/errors';
import { createLogger } from '../../sandbox/common/log';

const log = createLogger('test', () => {});

interface UserToken { user: string; project?: string; roles: string[]; expiresAt: number; revoked?: boolean }

/** A Keystone that knows a few tokens, counts its calls and can be taken down. */
class ScriptedKeystone {
  tokens = new Map<string, UserToken>();
  serviceTokens = new Map<string, number>();
  down = false;
  validations = 0;
  logins = 0;
  serviceTtlMs = 3600_000;
  constructor(private readonly clock: () => number) {}

  fetch: typeof fetch = async (input, init) => {
    if (this.down) throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    const url = String(input);
    const h = new Headers(init?.headers);
    if (init?.method === 'POST' && url.endsWith('/auth/tokens?nocatalog')) {
      this.logins++;
      const b = JSON.parse(String(init.body));
      if (b.auth.identity.password.user.password !== 'svc-pw') return new Response('{}', { status: 401 });
      const t = `svc-${this.logins}`;
      const exp = this.clock() + this.serviceTtlMs;
      this.serviceTokens.set(t, exp);
      return new Response(JSON.stringify({ token: { expires_at: new Date(exp).toISOString() } }), { status: 201, headers: { 'x-subject-token': t } });
    }
    if (init?.method === 'GET' && url.endsWith('/auth/tokens?nocatalog')) {
      const svc = this.serviceTokens.get(h.get('x-auth-token') ?? '');
      if (!svc || svc <= this.clock()) return new Response('{}', { status: 401 });
      this.validations++;
      const u = this.tokens.get(h.get('x-subject-token') ?? '');
      if (!u || u.revoked || u.expiresAt <= this.clock()) return new Response('{}', { status: 404 });
      return Response.json({ token: {
        user: { id: `id-${u.user}`, name: u.user }, expires_at: new Date(u.expiresAt).toISOString(),
        ...(u.project ? { project: { id: `id-${u.project}`, name: u.project } } : {}),
        roles: u.roles.map((name) => ({ id: `r-${name}`, name })),
      } });
    }
    return new Response('{}', { status: 404 });
  };
}

function setup(over: Partial<KeystoneIdentityConfig> = {}) {
  let t = Date.parse('2026-11-29T12:00:00Z');
  const clock = { now: () => t, advance: (ms: number) => { t += ms; } };
  const ks = new ScriptedKeystone(clock.now);
  const cfg: KeystoneIdentityConfig = {
    provider: 'keystone', auth_url: 'http://keystone.test/v3', username: 'cloudlet', password: 'svc-pw', project: 'service',
    user_domain: 'Default', project_domain: 'Default', cache_seconds: 60, member_roles: ['member'], admin_roles: ['admin'], register_region: false, ...over,
  };
  const id = new KeystoneIdentity(cfg, log, { fetch: ks.fetch, now: clock.now });
  return { ks, id, clock };
}

const HOUR = 3600_000;

describe('KeystoneIdentity (keystonemiddleware rules)', () => {
  it('maps Keystone roles to member and admin; the caller carries the project', async () => {
    const { ks, id, clock } = setup();
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member', 'reader'], expiresAt: clock.now() + HOUR });
    ks.tokens.set('root', { user: 'admin', project: 'admin', roles: ['admin', 'member', 'reader'], expiresAt: clock.now() + HOUR });
    const a = await id.validate('alice');
    assert.deepEqual([a?.userName, a?.projectName, a?.projectId, a?.roles, a?.isAdmin], ['alice', 'demo', 'id-demo', ['member'], false]);
    const r = await id.validate('root');
    assert.deepEqual([r?.roles, r?.isAdmin], [['admin', 'member'], true]);
  });

  it('refuses with 403 a valid token whose roles admit nothing here, and one not scoped to a project', async () => {
    const { ks, id, clock } = setup();
    ks.tokens.set('reader', { user: 'rita', project: 'demo', roles: ['reader'], expiresAt: clock.now() + HOUR });
    ks.tokens.set('unscoped', { user: 'alice', roles: [], expiresAt: clock.now() + HOUR });
    await assert.rejects(id.validate('reader'), (e: CloudletError) => e.code === 'Forbidden' && /rita .* demo .*has: reader/.test(e.message));
    await assert.rejects(id.validate('unscoped'), (e: CloudletError) => e.code === 'Forbidden' && /scoped to a project/.test(e.message));
  });

  it('admits other role names when configured (member_roles, admin_roles)', async () => {
    const { ks, id, clock } = setup({ member_roles: ['edge-user'], admin_roles: ['edge-operator'] });
    ks.tokens.set('t', { user: 'u', project: 'p', roles: ['edge-user'], expiresAt: clock.now() + HOUR });
    ks.tokens.set('m', { user: 'm', project: 'p', roles: ['member'], expiresAt: clock.now() + HOUR });
    assert.deepEqual((await id.validate('t'))?.roles, ['member']);
    await assert.rejects(id.validate('m'), (e: CloudletError) => e.code === 'Forbidden');
  });

  it('reuses a validation for at most cache_seconds: a revoked token is refused once the entry runs out', async () => {
    const { ks, id, clock } = setup({ cache_seconds: 60 });
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + HOUR });
    assert.ok(await id.validate('alice'));
    assert.ok(await id.validate('alice'));
    assert.equal(ks.validations, 1, 'the second check came from the cache');
    ks.tokens.get('alice')!.revoked = true;
    clock.advance(59_000);
    assert.ok(await id.validate('alice'), 'still inside the cache bound');
    clock.advance(1_001);
    assert.equal(await id.validate('alice'), undefined, 'refused after the bound');
    assert.equal(ks.validations, 2);
  });

  it('never accepts a token past its expiry, even from the cache', async () => {
    const { ks, id, clock } = setup({ cache_seconds: 600 });
    ks.tokens.set('short', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + 10_000 });
    assert.ok(await id.validate('short'));
    clock.advance(10_000);
    assert.equal(await id.validate('short'), undefined);
  });

  it('caches refusals for the same bound, and asks once for concurrent checks of one token', async () => {
    const { ks, id, clock } = setup();
    assert.equal(await id.validate('nope'), undefined);
    assert.equal(await id.validate('nope'), undefined);
    assert.equal(ks.validations, 1);
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + HOUR });
    const all = await Promise.all([1, 2, 3, 4].map(() => id.validate('alice')));
    assert.ok(all.every((a) => a?.userName === 'alice'));
    assert.equal(ks.validations, 2);
  });

  it('with cache_seconds 0 asks Keystone every time', async () => {
    const { ks, id, clock } = setup({ cache_seconds: 0 });
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + HOUR });
    await id.validate('alice'); await id.validate('alice');
    assert.equal(ks.validations, 2);
  });

  it('renews its service token before it expires, and once more when Keystone refuses it', async () => {
    const { ks, id, clock } = setup({ cache_seconds: 0 });
    ks.serviceTtlMs = 120_000;
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + 10 * HOUR });
    await id.validate('alice');
    assert.equal(ks.logins, 1);
    clock.advance(30_000);
    await id.validate('alice');
    assert.equal(ks.logins, 1, 'still fresh');
    clock.advance(40_000);  // within the renewal margin
    await id.validate('alice');
    assert.equal(ks.logins, 2);
    ks.serviceTokens.clear();  // revoked at Keystone
    assert.ok(await id.validate('alice'));
    assert.equal(ks.logins, 3);
  });

  it('says clearly when its service credentials are refused', async () => {
    const { ks, id, clock } = setup({ password: 'wrong' });
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + HOUR });
    await assert.rejects(id.validate('alice'), (e: CloudletError) => e.code === 'Unavailable' && /service credentials/.test(e.message));
  });

  it('Keystone down: cached validations keep working until they run out, anything else is 503', async () => {
    const { ks, id, clock } = setup({ cache_seconds: 60 });
    ks.tokens.set('alice', { user: 'alice', project: 'demo', roles: ['member'], expiresAt: clock.now() + HOUR });
    ks.tokens.set('bob', { user: 'bob', project: 'other', roles: ['member'], expiresAt: clock.now() + HOUR });
    assert.ok(await id.validate('alice'));
    ks.down = true;
    assert.equal((await id.validate('alice'))?.userName, 'alice');
    await assert.rejects(id.validate('bob'), (e: CloudletError) => e.code === 'Unavailable' && e.status === 503 && /not reachable/.test(e.message));
    clock.advance(61_000);
    await assert.rejects(id.validate('alice'), (e: CloudletError) => e.code === 'Unavailable');
    ks.down = false;
    assert.ok(await id.validate('alice'), 'works again once Keystone is back');
  });

  it('keeps at most maxEntries validations', async () => {
    const t = 0;
    const ks = new ScriptedKeystone(() => t);
    const id = new KeystoneIdentity({ provider: 'keystone', auth_url: 'http://k/v3', username: 'cloudlet', password: 'svc-pw', project: 'service', user_domain: 'Default',
      project_domain: 'Default', cache_seconds: 60, member_roles: ['member'], admin_roles: ['admin'], register_region: false }, log, { fetch: ks.fetch, now: () => t, maxEntries: 2 });
    for (const n of ['a', 'b', 'c']) ks.tokens.set(n, { user: n, project: 'p', roles: ['member'], expiresAt: t + HOUR });
    for (const n of ['a', 'b', 'c']) await id.validate(n);
    await id.validate('c');
    assert.equal(ks.validations, 3);
    await id.validate('a');  // evicted first
    assert.equal(ks.validations, 4);
  });
});

describe('config: identity section', () => {
  it('defaults to the embedded identity and RegionOne', () => {
    const c = parseConfig('users: [{name: a, password: x, roles: {p: [member]}}]');
    assert.deepEqual([c.identity, c.region], [{ provider: 'embedded' }, 'RegionOne']);
  });

  it('reads a keystone provider with defaults', () => {
    const c = parseConfig('region: edge1\nidentity: {provider: keystone, auth_url: "http://127.0.0.1:5000/v3/", username: cloudlet, password: pw, project: service}');
    assert.equal(c.region, 'edge1');
    assert.deepEqual(c.identity, { provider: 'keystone', auth_url: 'http://127.0.0.1:5000/v3', username: 'cloudlet', password: 'pw', project: 'service',
      user_domain: 'Default', project_domain: 'Default', cache_seconds: 300, member_roles: ['member'], admin_roles: ['admin'], register_region: false });
  });

  it('refuses what does not fit, saying which setting', () => {
    const bad: [string, RegExp][] = [
      ['identity: {provider: ldap}', /provider must be embedded or keystone/],
      ['identity: {provider: keystone, username: a, password: b, project: c}', /auth_url is needed/],
      ['identity: {provider: keystone, auth_url: "ftp://x", username: a, password: b, project: c}', /auth_url must be http/],
      ['identity: {provider: keystone, auth_url: "http://x", username: a, project: c}', /exactly one of password and password_file/],
      ['identity: {provider: keystone, auth_url: "http://x", username: a, password: b, project: c, cache_seconds: -1}', /cache_seconds/],
      ['identity: {provider: keystone, auth_url: "http://x", username: a, password: b, project: c, member_role: [x]}', /member_role is not a setting/],
      ['identity: {provider: keystone, auth_url: "http://x", username: a, password: b, project: c}\nusers: [{name: a, password: x, roles: {p: [member]}}]', /users come from Keystone/],
      ['identity: {auth_url: "http://x"}', /only for provider keystone/],
      ['region: "edge 1"', /region must be a name/],
    ];
    for (const [text, re] of bad) assert.throws(() => parseConfig(text), (e: CloudletError) => e.code === 'BadInput' && re.test(e.message), text);
  });
});
