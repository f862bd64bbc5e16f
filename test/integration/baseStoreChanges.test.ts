/**
 * Issue 17.4, daemon side: store changes the daemon did not cause are published. A running daemon
 * (`cloudlet serve`); the CLI (`cloudlet base import` / `base delete`, CLOUDLET_HOME = the daemon's
 * data folder, never the API) adds and removes a base; a member watching /cloudlet/v1/events gets
 * the `images` change and GET /image/v2/images lists (then no longer lists) the base, in bounded time.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { projectRoot } from '../../sandbox/common/paths';
import { CloudletClient, type ChangeEvent } from '../../sandbox/client';
import { startDaemon, TEST_USERS, type TestDaemon } from './fixtures/daemon';
import { ensureTestBase } from './fixtures/testBase';

const execFileP = promisify(execFile);
/** How long a change may take to show (fs.watch + debounce; the 10 s rescan is the fallback). */
const BOUND_MS = 15_000;

describe('daemon: bases added or removed by the CLI on its data folder are published (issue 17.4)', function () {
  this.timeout(600_000);
  let d: TestDaemon;
  let tmp: string;
  let bundle: string;
  let baseId: string;

  const cli = async (home: string, args: string[]) => (await execFileP(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'), ...args], {
    env: { ...process.env, CLOUDLET_CLI_MAIN: '1', CLOUDLET_HOME: home }, timeout: 300_000, maxBuffer: 16 << 20,
  })).stdout;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-basechanges-'));
    const cached = await ensureTestBase();
    baseId = cached.baseId;
    bundle = path.join(tmp, 'test-guest.tar');
    await cli(cached.home, ['base', 'export', baseId, bundle]);
    d = await startDaemon({ ip: '127.0.0.2' });
  });
  after(async () => {
    await d?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('cloudlet base import into the data folder: the images event arrives and the base is listed; cloudlet base delete: gone the same way', async () => {
    const alice = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    assert.deepEqual(await alice.listBases(), []);
    const seen: ChangeEvent[] = [];
    const ac = new AbortController();
    const watching = alice.watchEvents((e) => seen.push(e), ac.signal).catch(() => undefined);
    const until = async <T>(what: string, fn: () => Promise<T | undefined>) => {
      const t0 = Date.now();
      for (;;) {
        const v = await fn();
        if (v !== undefined) return { v, ms: Date.now() - t0 };
        if (Date.now() - t0 > BOUND_MS) throw new Error(`${what}: not within ${BOUND_MS} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await new Promise((r) => setTimeout(r, 300));
      await cli(d.dataDir, ['base', 'import', bundle]);
      const added = await until('the images event for the imported base', async () => seen.find((e) => e.topic === 'images' && e.data.change === 'active'));
      const listed = await alice.listBases();
      assert.deepEqual(listed.map((i) => [i.base_sha256_uuid, i.visibility, i.status]), [[baseId, 'public', 'active']]);
      assert.equal(added.v.data.id, listed[0].id, 'the event names the new image');

      await cli(d.dataDir, ['base', 'delete', baseId]);
      await until('the images event for the removed base', async () => seen.find((e) => e.topic === 'images' && e.data.change === 'deleted' && e.data.id === listed[0].id));
      assert.deepEqual(await alice.listBases(), []);
      console.log(`      (import seen after ${added.ms} ms of waiting)`);
    } finally { ac.abort(); await watching; }
  });
});
