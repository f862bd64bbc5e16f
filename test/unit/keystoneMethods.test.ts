/**
 * The embedded Keystone's other auth methods (issue 14 item 5): `token` (re-scoping, the original
 * expiry kept) and application credentials (create/list/show/delete, login by id or by name with
 * its user, role limits, expiry, tokens ended with the credential, restricted credentials manage
 * none, throttled like passwords); the user's projects. The unmodified clients drive the same
 * routes in test/integration/openstackClients.test.ts.
 */
import { strict as assert } from 'assert';
import { imageModule } from '../../sandbox/cloudlet/api/image';
import { CloudletClient } from '../../sandbox/client';
import { startUnitDaemon, UNIT_USERS, type UnitDaemon } from './helpers/inProcessDaemon';

describe('embedded Keystone: token re-scoping, application credentials, the user\'s projects', function () {
  this.timeout(120_000);
  let d: UnitDaemon;
  const auth = (identity: Record<string, unknown>, scope?: Record<string, unknown>, from = '127.0.0.1') => d.daemon.app.inject({
    method: 'POST', url: '/identity/v3/auth/tokens', remoteAddress: from, payload: { auth: { identity, ...(scope ? { scope } : {}) } },
  });
  const withToken = (token: string, method: string, url: string, payload?: unknown) =>
    d.daemon.app.inject({ method: method as 'GET', url, headers: { 'x-auth-token': token }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  const adminLogin = async (project: string) => {
    const r = await auth({ methods: ['password'], password: { user: { name: 'admin', password: UNIT_USERS.admin } } }, { project: { name: project } });
    assert.equal(r.statusCode, 201, r.body);
    return { token: r.headers['x-subject-token'] as string, body: r.json().token };
  };

  beforeEach(async () => {
    d = await startUnitDaemon([imageModule({ maxUploadBytes: 1 << 20 })], {
      users: [
        { name: 'admin', password: UNIT_USERS.admin, roles: { admin: ['admin', 'member'], demo: ['member'] } },
        { name: 'alice', password: UNIT_USERS.alice, roles: { demo: ['member'] } },
        { name: 'bob', password: UNIT_USERS.bob, roles: { other: ['member'] } },
      ],
    });
  });
  afterEach(async () => { await d.close(); });

  it('token method: re-scopes to another project of the same user, keeps the expiry, refuses projects without a role', async () => {
    const first = await adminLogin('admin');
    const r = await auth({ methods: ['token'], token: { id: first.token } }, { project: { name: 'demo' } });
    assert.equal(r.statusCode, 201, r.body);
    const t = r.json().token;
    assert.equal(t.project.name, 'demo');
    assert.deepEqual(t.roles.map((x: { name: string }) => x.name), ['member']);
    assert.deepEqual(t.methods, ['token', 'password']);
    assert.equal(t.expires_at, first.body.expires_at);
    assert.notEqual(r.headers['x-subject-token'], first.token);
    const alice = await d.token('alice');
    assert.equal((await auth({ methods: ['token'], token: { id: alice } }, { project: { name: 'other' } })).statusCode, 401);
    assert.equal((await auth({ methods: ['token'], token: { id: 'gAAAAnot-a-token' } })).statusCode, 401);
    assert.equal((await auth({ methods: ['totp'] })).statusCode, 400);
  });

  it('application credentials: created with the caller\'s roles or fewer, secret shown once, login by id and by name, role limit holds', async () => {
    const admin = await adminLogin('admin');
    const uid = admin.body.user.id;
    const base = `/identity/v3/users/${uid}/application_credentials`;
    const made = await withToken(admin.token, 'POST', base, { application_credential: { name: 'ci', roles: [{ name: 'member' }], description: 'CI' } });
    assert.equal(made.statusCode, 201, made.body);
    const c = made.json().application_credential;
    assert.ok(c.secret.length >= 32);
    assert.deepEqual(c.roles.map((x: { name: string }) => x.name), ['member']);
    assert.equal(c.project_id, admin.body.project.id);
    // Not among the caller's roles, a duplicate name, access rules: refused, nothing stored.
    assert.equal((await withToken(admin.token, 'POST', base, { application_credential: { name: 'x', roles: [{ name: 'reader' }] } })).statusCode, 403);
    assert.equal((await withToken(admin.token, 'POST', base, { application_credential: { name: 'ci' } })).statusCode, 409);
    assert.equal((await withToken(admin.token, 'POST', base, { application_credential: { name: 'y', access_rules: [{ service: 'compute', method: 'GET', path: '/servers' }] } })).statusCode, 400);
    assert.equal((await withToken(admin.token, 'POST', base, { application_credential: { name: 'z', expires_at: '2001-01-01T00:00:00Z' } })).statusCode, 400);
    const listed = (await withToken(admin.token, 'GET', base)).json().application_credentials;
    assert.deepEqual(listed.map((x: { name: string }) => x.name), ['ci']);
    assert.equal(listed[0].secret, undefined, 'the secret is shown only at creation');
    assert.equal((await withToken(admin.token, 'GET', `${base}/${c.id}`)).json().application_credential.name, 'ci');
    // Another user may neither see nor create them.
    const alice = await d.token('alice');
    assert.equal((await withToken(alice, 'GET', base)).statusCode, 403);

    const byId = await auth({ methods: ['application_credential'], application_credential: { id: c.id, secret: c.secret } });
    assert.equal(byId.statusCode, 201, byId.body);
    const t = byId.json().token;
    assert.deepEqual(t.methods, ['application_credential']);
    assert.deepEqual(t.application_credential, { id: c.id, name: 'ci', restricted: true });
    assert.equal(t.project.name, 'admin');
    assert.deepEqual(t.roles.map((x: { name: string }) => x.name), ['member'], 'an admin\'s member-only credential gives member only');
    const credToken = byId.headers['x-subject-token'] as string;
    assert.equal((await withToken(credToken, 'GET', '/identity/v3/projects')).statusCode, 403, 'no admin call with a member-only credential');
    assert.equal((await withToken(credToken, 'GET', '/image/v2/images')).statusCode, 200);
    // A restricted credential's token manages no credentials and is not re-scoped elsewhere.
    assert.equal((await withToken(credToken, 'POST', base, { application_credential: { name: 'child' } })).statusCode, 403);
    assert.equal((await auth({ methods: ['token'], token: { id: credToken } }, { project: { name: 'demo' } })).statusCode, 403);

    const byName = await auth({ methods: ['application_credential'], application_credential: { name: 'ci', user: { name: 'admin', domain: { name: 'Default' } }, secret: c.secret } });
    assert.equal(byName.statusCode, 201, byName.body);
    assert.equal((await auth({ methods: ['application_credential'], application_credential: { id: c.id, secret: 'wrong-secret' } })).statusCode, 401);

    // The client logs in with it the same way.
    const client = await CloudletClient.loginWithApplicationCredential({ authUrl: `${d.daemon.url}/identity`, applicationCredentialId: c.id, secret: c.secret });
    assert.deepEqual(client.session.applicationCredential, { id: c.id, name: 'ci' });
    assert.equal(client.isAdmin, false);
    assert.ok(Array.isArray(await client.listImages()));

    // Deleting it ends its tokens.
    assert.equal((await withToken(admin.token, 'DELETE', `${base}/${c.id}`)).statusCode, 204);
    assert.equal((await withToken(credToken, 'GET', '/image/v2/images')).statusCode, 401);
    assert.equal((await auth({ methods: ['application_credential'], application_credential: { id: c.id, secret: c.secret } })).statusCode, 401);
    assert.equal((await withToken(admin.token, 'GET', base)).json().application_credentials.length, 0);
  });

  it('an unrestricted credential may make another; wrong secrets are throttled per credential', async () => {
    const admin = await adminLogin('demo');
    const base = `/identity/v3/users/${admin.body.user.id}/application_credentials`;
    const c = (await withToken(admin.token, 'POST', base, { application_credential: { name: 'free', unrestricted: true, secret: 'my-own-secret-1' } })).json().application_credential;
    assert.equal(c.secret, 'my-own-secret-1');
    const t = (await auth({ methods: ['application_credential'], application_credential: { id: c.id, secret: c.secret } })).headers['x-subject-token'] as string;
    assert.equal((await withToken(t, 'POST', base, { application_credential: { name: 'child' } })).statusCode, 201);
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) codes.push((await auth({ methods: ['application_credential'], application_credential: { id: c.id, secret: `guess-${i}` } }, undefined, '127.0.0.9')).statusCode);
    assert.deepEqual(codes, [401, 401, 401, 401, 401, 429, 429]);
    assert.ok(d.logs.some((l) => l.includes(`audit: login of application credential "${c.id}" from 127.0.0.9 refused`)));
  });

  it('GET /v3/users/{id}/projects: the user\'s own projects; another user\'s only for an admin', async () => {
    const admin = await adminLogin('admin');
    const mine = await withToken(admin.token, 'GET', `/identity/v3/users/${admin.body.user.id}/projects`);
    assert.deepEqual(mine.json().projects.map((p: { name: string }) => p.name), ['admin', 'demo']);
    const aliceToken = await d.token('alice');
    const aliceId = (await d.daemon.app.inject({ method: 'GET', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': aliceToken, 'x-subject-token': aliceToken } })).json().token.user.id;
    assert.deepEqual((await withToken(aliceToken, 'GET', `/identity/v3/users/${aliceId}/projects`)).json().projects.map((p: { name: string }) => p.name), ['demo']);
    assert.equal((await withToken(aliceToken, 'GET', `/identity/v3/users/${admin.body.user.id}/projects`)).statusCode, 403);
    assert.equal((await withToken(admin.token, 'GET', `/identity/v3/users/${aliceId}/projects`)).statusCode, 200);
  });
});
