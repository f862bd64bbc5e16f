/**
 * Issue 14: Debian's unmodified OpenStack clients against the daemon, as their users run them
 * (never our client): `openstack` (keystone, glance, nova, zun, blazar plugins), `glance`, `nova`,
 * `zun`, keystoneauth with an application credential and openstacksdk's cloud layer in python3.
 * One daemon with the test base and two projects (demo, other) plus admin.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startDaemon, type TestDaemon, TEST_USERS } from './fixtures/daemon';

type Env = NodeJS.ProcessEnv;
interface Run { stdout: string; stderr: string; code: number }

/** Runs a client program; resolves with its output and exit code (a failing command is a result too). */
function run(cmd: string, args: string[], env: Env, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { env, timeout: 180_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0 });
    });
    if (input !== undefined) p.stdin!.end(input);
  });
}

describe('unmodified OpenStack clients against the daemon (issue 14)', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  let tmp: string;

  /** The environment of a user logged in with a password (OS_* as an openrc file sets them). */
  const userEnv = (user: keyof typeof TEST_USERS, project: string): Env => ({
    PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_USERNAME: user, OS_PASSWORD: TEST_USERS[user],
    OS_PROJECT_NAME: project, OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3',
    OS_INTERFACE: 'public', no_proxy: '127.0.0.0/8', http_proxy: '', https_proxy: '',
  });
  /** Runs a command that must succeed; its stdout. */
  const ok = async (cmd: string, args: string[], env: Env, input?: string) => {
    const r = await run(cmd, args, env, input);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  const osJson = async (env: Env, ...args: string[]) => JSON.parse(await ok('openstack', [...args, '-f', 'json'], env));

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-osclients-'));
    d = await startDaemon({ ip: '127.0.0.2', withTestBase: true });
  });
  after(async () => { await d?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  describe('keystone', () => {
    it('openstack application credential create/list/show/delete; login with it (v3applicationcredential) gets only its roles', async () => {
      const admin = userEnv('admin', 'admin');
      const made = await osJson(admin, 'application', 'credential', 'create', '--role', 'member', '--description', 'CI runner', 'ci');
      assert.ok(made.secret.length >= 32 && made.id);
      assert.equal(made.roles, 'member');
      const listed = await osJson(admin, 'application', 'credential', 'list');
      assert.deepEqual(listed.map((c: { Name: string }) => c.Name), ['ci']);
      assert.equal((await osJson(admin, 'application', 'credential', 'show', 'ci')).id, made.id);

      const credEnv: Env = {
        PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_AUTH_TYPE: 'v3applicationcredential', OS_IDENTITY_API_VERSION: '3',
        OS_APPLICATION_CREDENTIAL_ID: made.id, OS_APPLICATION_CREDENTIAL_SECRET: made.secret, OS_INTERFACE: 'public', no_proxy: '127.0.0.0/8',
      };
      const t = await osJson(credEnv, 'token', 'issue');
      assert.equal(t.project_id, made.project_id);
      assert.ok((await osJson(credEnv, 'flavor', 'list')).length >= 1, 'a member call works');
      // The admin's credential was limited to member: publishing an image (admin only) is refused.
      const refused = await run('openstack', ['image', 'create', '--public', 'cred-public'], credEnv);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /403|admin role/i);

      await ok('openstack', ['application', 'credential', 'delete', 'ci'], admin);
      assert.deepEqual(await osJson(admin, 'application', 'credential', 'list'), []);
      const gone = await run('openstack', ['token', 'issue'], credEnv);
      assert.notEqual(gone.code, 0, 'a deleted credential no longer logs in');
    });

    it('keystoneauth1 (python3) logs in with an application credential by name and calls a service with the session', async () => {
      const alice = userEnv('alice', 'demo');
      const made = await osJson(alice, 'application', 'credential', 'create', '--secret', 'a-long-enough-secret-for-ci', 'ka-cred');
      const script = `
import json, sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
a = v3.ApplicationCredential(auth_url=sys.argv[1], application_credential_name='ka-cred', application_credential_secret=sys.argv[2],
                             username='alice', user_domain_name='Default')
s = session.Session(auth=a)
flavors = s.get('/flavors', endpoint_filter={'service_type': 'compute', 'interface': 'public'}).json()['flavors']
print(json.dumps({'project': s.get_project_id(), 'token': bool(s.get_token()), 'flavors': [f['name'] for f in flavors]}))
`;
      const out = JSON.parse(await ok('/usr/bin/python3', ['-c', script, d.authUrl, 'a-long-enough-secret-for-ci'], alice));
      assert.equal(out.project, made.project_id);
      assert.equal(out.token, true);
      assert.ok(out.flavors.includes('cloudlet.small'));
    });

    it('re-scopes a token with --os-auth-type token; project list --my-projects', async () => {
      const admin = userEnv('admin', 'admin');
      const first = await osJson(admin, 'token', 'issue');
      const demoId = (await osJson(admin, 'project', 'show', 'demo')).id;
      const tokenEnv: Env = {
        PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_AUTH_TYPE: 'token', OS_TOKEN: first.id, OS_PROJECT_NAME: 'demo',
        OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public', no_proxy: '127.0.0.0/8',
      };
      const second = await osJson(tokenEnv, 'token', 'issue');
      assert.equal(second.project_id, demoId);
      assert.notEqual(second.id, first.id);
      assert.equal(second.expires, first.expires, 'a re-scoped token expires with the one it came from');
      const mine = await osJson(admin, 'project', 'list', '--my-projects');
      assert.deepEqual(mine.map((p: { Name: string }) => p.Name).sort(), ['admin', 'demo']);
      const alices = await osJson(userEnv('alice', 'demo'), 'project', 'list', '--my-projects');
      assert.deepEqual(alices.map((p: { Name: string }) => p.Name), ['demo']);
    });
  });

  describe('glance', () => {
    it('glance image-create/list/show/download/tags/update/delete (v2 through the served schemas); a missing image is a clean 404', async () => {
      const alice = userEnv('alice', 'demo');
      const blob = path.join(tmp, 'blob.bin');
      fs.writeFileSync(blob, Buffer.alloc(300_000, 7));
      const created = await ok('glance', ['image-create', '--name', 'glance-cli', '--disk-format', 'raw', '--container-format', 'bare', '--file', blob], alice);
      const id = /\|\s*id\s*\|\s*([0-9a-f-]{36})/.exec(created)?.[1];
      assert.ok(id, created);
      assert.match(await ok('glance', ['image-list'], alice), new RegExp(`${id} \\| glance-cli`));
      assert.match(await ok('glance', ['image-show', id], alice), /\|\s*status\s*\|\s*active/);
      const out = path.join(tmp, 'downloaded.bin');
      await ok('glance', ['image-download', '--file', out, id], alice);
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(blob)));

      await ok('glance', ['image-tag-update', id, 'edge'], alice);
      await ok('glance', ['image-tag-update', id, 'scratch'], alice);
      await ok('glance', ['image-tag-delete', id, 'scratch'], alice);
      await ok('openstack', ['image', 'set', '--tag', 'ci', id], alice);
      assert.deepEqual((await osJson(alice, 'image', 'show', id)).tags.sort(), ['ci', 'edge']);
      assert.match(await ok('glance', ['image-list', '--tag', 'edge'], alice), new RegExp(id));
      assert.match(await ok('glance', ['image-update', '--property', 'purpose=test', id], alice), /\|\s*purpose\s*\|\s*test/);

      const missing = await run('glance', ['image-show', '00000000-0000-4000-8000-000000000000'], alice);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /404 Not Found: No image found with ID 00000000-0000-4000-8000-000000000000/);
      assert.doesNotMatch(missing.stderr, /Traceback|cloudlet_error/);
      // Another project's user sees no such image either.
      assert.notEqual((await run('glance', ['image-show', id], userEnv('bob', 'other'))).code, 0);

      await ok('glance', ['image-delete', id], alice);
      assert.doesNotMatch(await ok('glance', ['image-list'], alice), new RegExp(id));
    });
  });

  describe('nova', () => {
    it('openstack server create --wait keeps an address; stop/start, reboot --soft/--hard, set --property, console log, limits, quota, zones, keypairs, versions', async () => {
      const alice = userEnv('alice', 'demo');
      const base = (await osJson(alice, 'image', 'list')).find((i: { Status: string }) => i.Status === 'active');
      assert.ok(base, 'the base is advertised as an image');
      const created = await osJson(alice, 'server', 'create', '--image', base.ID, '--flavor', 'cloudlet.small', '--wait', 'nova-vm');
      assert.equal(created.status, 'ACTIVE');
      const listed = await osJson(alice, 'server', 'list');
      assert.match(JSON.stringify(listed[0].Networks), /cloudlet-127\.0\.0\.2.*127\.0\.0\.1/, 'server list shows how it is reached');

      await ok('openstack', ['server', 'stop', 'nova-vm'], alice);
      assert.equal((await osJson(alice, 'server', 'show', 'nova-vm')).status, 'SHUTOFF');
      await ok('openstack', ['server', 'start', 'nova-vm'], alice);
      assert.equal((await osJson(alice, 'server', 'show', 'nova-vm')).status, 'ACTIVE');
      await ok('openstack', ['server', 'reboot', '--hard', '--wait', 'nova-vm'], alice);
      await ok('openstack', ['server', 'reboot', '--soft', '--wait', 'nova-vm'], alice);
      assert.equal((await osJson(alice, 'server', 'show', 'nova-vm')).status, 'ACTIVE');
      await ok('openstack', ['server', 'set', '--property', 'role=web', 'nova-vm'], alice);
      assert.match(JSON.stringify((await osJson(alice, 'server', 'show', 'nova-vm')).properties), /role.*web/);
      await ok('openstack', ['server', 'unset', '--property', 'role', 'nova-vm'], alice);
      // After a hard reboot the serial console shows the guest booting again.
      const log = await ok('openstack', ['console', 'log', 'show', '--lines', '200', 'nova-vm'], alice);
      assert.match(log, /Linux version|cloudlet|login|init/i);

      const limits = await osJson(alice, 'limits', 'show', '--absolute');
      assert.ok(limits.some((l: { Name: string; Value: number }) => l.Name === 'totalInstancesUsed' && l.Value === 1), JSON.stringify(limits));
      const quota = await osJson(alice, 'quota', 'show');
      assert.ok(JSON.stringify(quota).includes('instances'), JSON.stringify(quota));
      assert.deepEqual((await osJson(alice, 'availability', 'zone', 'list', '--compute')).map((z: { 'Zone Name': string }) => z['Zone Name']), ['nova']);
      await ok('openstack', ['keypair', 'create', '--private-key', path.join(tmp, 'k.pem'), 'ci-key'], alice);
      assert.deepEqual((await osJson(alice, 'keypair', 'list')).map((k: { Name: string }) => k.Name), ['ci-key']);
      assert.match(fs.readFileSync(path.join(tmp, 'k.pem'), 'utf8'), /BEGIN RSA PRIVATE KEY/);
      await ok('openstack', ['keypair', 'delete', 'ci-key'], alice);

      assert.match(await ok('nova', ['version-list'], alice), /v2\.1\s*\|\s*CURRENT/);
      const tooNew = await run('openstack', ['--os-compute-api-version', '2.79', 'server', 'list'], alice);
      assert.notEqual(tooNew.code, 0);
      assert.match(tooNew.stderr, /406|not supported/i);

      await ok('openstack', ['server', 'delete', '--wait', 'nova-vm'], alice);
    });

    it('openstacksdk cloud layer: create_server(wait=True) returns the ACTIVE server with its address (the Ansible path), delete_server', async () => {
      const alice = userEnv('alice', 'demo');
      const script = `
import json, sys, openstack
conn = openstack.connect(auth_url=sys.argv[1], username='alice', password=sys.argv[2], project_name='demo',
                         user_domain_name='Default', project_domain_name='Default', interface='public')
image = [i for i in conn.list_images() if i.status == 'active' and (i.properties or {}).get('cloudlet_type') == 'cloudlet_base_disk'][0]
s = conn.create_server('sdk-vm', image=image.id, flavor='cloudlet.small', wait=True, timeout=600)
out = {'status': s.status, 'addresses': s.addresses, 'private_v4': s.private_v4, 'interface_ip': s.interface_ip}
out['listed'] = [x.name for x in conn.list_servers()]
out['deleted'] = conn.delete_server(s.id, wait=True, timeout=300)
print(json.dumps(out))
`;
      const out = JSON.parse(await ok('/usr/bin/python3', ['-c', script, d.authUrl, TEST_USERS.alice], alice));
      assert.equal(out.status, 'ACTIVE');
      assert.deepEqual(Object.values(out.addresses).flat().map((a) => (a as { addr: string }).addr), ['127.0.0.1']);
      assert.equal(out.interface_ip, '127.0.0.1');
      assert.deepEqual(out.listed, ['sdk-vm']);
      assert.equal(out.deleted, true);
    });
  });

  describe('zun', () => {
    it('zun list and openstack appcontainer list negotiate the microversion from the root document', async () => {
      const alice = userEnv('alice', 'demo');
      assert.match(await ok('zun', ['list'], alice), /\| uuid\s*\| name/);
      assert.deepEqual(await osJson(alice, 'appcontainer', 'list'), []);
    });
  });
});
