/**
 * Acceptance 1: Debian's standard `openstack` client, used as a user would, against the daemon:
 * token issue, server create/list/show/delete, image list, image save (an overlay), flavor list.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startDaemon, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { CloudletClient } from '../../sandbox/client';

describe('openstack CLI against the daemon', function () {
  let d: TestDaemon;
  let tmp: string;
  let env: NodeJS.ProcessEnv;

  function os_(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('openstack', args, { env, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`openstack ${args.join(' ')}: ${stderr || err.message}`)); else resolve(stdout);
      });
    });
  }
  const json = async (...args: string[]) => JSON.parse(await os_(...args, '-f', 'json'));

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-osc-'));
    d = await startDaemon({ ip: '127.0.0.2', withTestBase: true });
    env = {
      PATH: process.env.PATH, HOME: tmp, OS_AUTH_URL: d.authUrl, OS_USERNAME: 'alice', OS_PASSWORD: TEST_USERS.alice,
      OS_PROJECT_NAME: 'demo', OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public',
    };
  });
  after(async () => { await d?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('issues a token', async () => {
    const t = await json('token', 'issue');
    assert.ok(t.id.length > 20);
    assert.ok(t.project_id && t.user_id && t.expires);
  });

  it('lists flavors', async () => {
    const f = await json('flavor', 'list');
    assert.ok(f.some((x: any) => x.Name === 'cloudlet.small'));
  });

  it('creates, lists, shows and deletes a server from the base image; lists images; saves an overlay', async () => {
    const images = await json('image', 'list');
    const base = images.find((i: any) => i.Status === 'active');
    assert.ok(base, 'the base is advertised as an image');
    const created = await json('server', 'create', '--image', base.ID, '--flavor', 'cloudlet.small', '--wait', 'osc-vm');
    assert.equal(created.status, 'ACTIVE');
    const list = await json('server', 'list');
    assert.deepEqual(list.map((s: any) => [s.Name, s.Status]), [['osc-vm', 'ACTIVE']]);
    const shown = await json('server', 'show', 'osc-vm');
    assert.equal(shown.id, created.id);
    assert.equal(shown['OS-EXT-STS:vm_state'], 'active');

    // An overlay of that server (through the client: `cloudlet-overlay-finish` is our action), saved with the CLI.
    const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const ov = await c.finishOverlay(created.id, 'osc-overlay');
    assert.equal((await c.watchJob(ov.jobId)).status, 'DONE');
    const withOverlay = await json('image', 'list');
    assert.ok(withOverlay.some((i: any) => i.Name === 'osc-overlay' && i.Status === 'active'));
    const file = path.join(tmp, 'saved.overlay');
    await os_('image', 'save', '--file', file, ov.imageId);
    const img = await c.getImage(ov.imageId);
    assert.equal(fs.statSync(file).size, img.size);
    assert.equal(fs.readFileSync(file).subarray(0, 8).toString('ascii'), 'CLDOVRLY');

    await os_('server', 'delete', '--wait', 'osc-vm');
    assert.deepEqual(await json('server', 'list'), []);
  });
});
