/**
 * The daemon core through the real `cloudlet serve` process and sandbox/client: Keystone auth,
 * catalog, tokens that expire and survive restarts, OpenStack error bodies, services on other hosts.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as YAML from 'yaml';
import { startDaemon, type TestDaemon, testConfig, TEST_USERS } from './fixtures/daemon';
import { CloudletClient, ApiError, type CallRecord } from '../../sandbox/client';

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('cloudlet daemon: identity and core', function () {
  let d: TestDaemon;
  before(async () => { d = await startDaemon({ ip: '127.0.0.2', config: testConfig({ token_ttl_seconds: 3600 }) }); });
  after(async () => { await d?.stop(); });

  it('logs in with a password and lists the services in the catalog', async () => {
    const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    assert.ok(c.token.length > 20);
    assert.equal(c.session.projectName, 'demo');
    assert.deepEqual(c.session.roles, ['member']);
    assert.ok(Date.parse(c.session.expiresAt) > Date.now());
    assert.equal(c.endpoint('identity'), `${d.url}/identity`);
    assert.equal(c.endpoint('cloudlet'), `${d.url}/cloudlet/v1`);
    assert.deepEqual(await c.listJobs(), []);
  });

  it('refuses a wrong password, and a project the user has no role in, with 401', async () => {
    await assert.rejects(CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: 'nope', project: 'demo' }), (e: ApiError) => e.httpStatus === 401);
    await assert.rejects(CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'other' }), (e: ApiError) => e.httpStatus === 401);
  });

  it('answers 401 with a Keystone error body when there is no token or a bad one', async () => {
    for (const headers of [{}, { 'x-auth-token': 'gAAAAnot-a-token' }] as Record<string, string>[]) {
      const r = await fetch(`${d.url}/cloudlet/v1/jobs`, { headers });
      assert.equal(r.status, 401);
      const b = await r.json() as any;
      assert.equal(b.error.code, 401);
      assert.equal(b.error.title, 'Unauthorized');
    }
  });

  it('answers malformed JSON with 400 and an OpenStack error body', async () => {
    const r = await fetch(`${d.url}/identity/v3/auth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"auth": ' });
    assert.equal(r.status, 400);
    const b = await r.json() as any;
    assert.equal(b.error.code, 400);
    assert.match(b.error.message, /malformed|JSON/i);
  });

  it('refuses a body over the size limit with 413', async () => {
    const r = await fetch(`${d.url}/identity/v3/auth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ x: 'a'.repeat(2 * 1024 * 1024) }) });
    assert.equal(r.status, 413);
  });

  it('validates and revokes tokens (GET/DELETE /v3/auth/tokens)', async () => {
    const admin = await d.login('admin');
    const t = await d.login('bob');
    const v = await fetch(`${d.authUrl}/auth/tokens`, { headers: { 'x-auth-token': admin, 'x-subject-token': t } });
    assert.equal(v.status, 200);
    assert.equal(((await v.json()) as any).token.user.name, 'bob');
    const del = await fetch(`${d.authUrl}/auth/tokens`, { method: 'DELETE', headers: { 'x-auth-token': admin, 'x-subject-token': t } });
    assert.equal(del.status, 204);
    assert.equal((await fetch(`${d.url}/cloudlet/v1/jobs`, { headers: { 'x-auth-token': t } })).status, 401);
  });

  it('logs every call without secrets', async () => {
    const calls: CallRecord[] = [];
    const c = await CloudletClient.login({ authUrl: d.url + '/identity', username: 'carol', password: TEST_USERS.carol, project: 'demo', onCall: (x) => calls.push(x) });
    await c.listJobs();
    await assert.rejects(c.getJob('nope'));
    assert.deepEqual(calls.map((x) => [x.method, x.status]), [['POST', 201], ['GET', 200], ['GET', 404]]);
    const text = JSON.stringify(calls);
    assert.ok(!text.includes(TEST_USERS.carol) && !text.includes(c.token));
  });
});

describe('cloudlet daemon: restart and expiry', function () {
  it('keeps users and token validity over a restart; an expired token is refused with 401, also after a restart', async () => {
    // No race with the clock: the token that must survive the restarts lives an hour (a slow restart
    // cannot expire it); the short-lived one is only checked once its own expires_at has passed.
    const d = await startDaemon({ ip: '127.0.0.2', config: testConfig({ token_ttl_seconds: 3600 }) });
    const jobs = async (t: string) => (await fetch(`${d.url}/cloudlet/v1/jobs`, { headers: { 'x-auth-token': t } })).status;
    try {
      const long = await d.login('alice');
      fs.writeFileSync(d.configFile, YAML.stringify(testConfig({ token_ttl_seconds: 2 })));
      await d.restart();
      assert.equal(await jobs(long), 200, 'token still valid after restart');
      const r = await fetch(`${d.authUrl}/auth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: 'bob', domain: { id: 'default' }, password: TEST_USERS.bob } } },
        scope: { project: { name: 'other', domain: { id: 'default' } } } } }) });
      assert.equal(r.status, 201, 'users kept');
      const short = r.headers.get('x-subject-token')!;
      const { token } = await r.json() as { token: { issued_at: string; expires_at: string } };
      assert.equal(Date.parse(token.expires_at) - Date.parse(token.issued_at), 2000, 'the new token_ttl_seconds applies');
      while (Date.now() <= Date.parse(token.expires_at) + 50) await new Promise((res) => setTimeout(res, 100));
      const expired = await fetch(`${d.url}/cloudlet/v1/jobs`, { headers: { 'x-auth-token': short } });
      assert.equal(expired.status, 401, 'expired token');
      assert.equal(((await expired.json()) as any).error.code, 401);
      await d.restart();
      assert.equal(await jobs(short), 401, 'still expired after restart');
      assert.equal(await jobs(long), 200, 'the unexpired token survives a second restart');
    } finally { await d.stop(); }
  });
});

describe('cloudlet daemon: services on different hosts', function () {
  it('the client reaches each service at the address the catalog names', async () => {
    const port = await freePort('127.0.0.4');
    const d = await startDaemon({ ip: '127.0.0.2', args: ['--extra-listen', `127.0.0.4:${port}`, '--service-url', `cloudlet=http://127.0.0.4:${port}/cloudlet/v1`] });
    try {
      const calls: CallRecord[] = [];
      const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo', onCall: (x) => calls.push(x) });
      assert.equal(c.endpoint('cloudlet'), `http://127.0.0.4:${port}/cloudlet/v1`);
      await c.listJobs();
      assert.match(calls[1].url, new RegExp(`^http://127\\.0\\.0\\.4:${port}/`));
      assert.match(calls[0].url, /^http:\/\/127\.0\.0\.2:/);
    } finally { await d.stop(); }
  });
});
