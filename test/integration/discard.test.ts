/**
 * Discards keep the guest intact (issue 13), with real QEMU: the discard back-end (test guest)
 * holds a known pattern in a shell's heap and another in a file on disk, after install steps that
 * freed 8 MiB of disk blocks and 24 MiB of memory, all random bytes. `cloudlet build` (discards on)
 * must leave those out of the overlay, and after synthesis on a daemon and a live handoff to a
 * second daemon both patterns must read back exactly (the file from the virtual disk, page cache
 * dropped).
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { loadBuildFile } from '../../sandbox/build/buildFile';
import { runBuild, type BuildResult } from '../../sandbox/build/build';
import { CloudletClient, type HandoffReport, type Server } from '../../sandbox/client';
import { startDaemon, killProcessesUsing, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { uploadOverlay, httpGet } from './fixtures/sampleOverlay';
import { tempHome, type TempHome } from './fixtures/testBase';

const lines = (from: number, to: number) => { const a: string[] = []; for (let i = from; i <= to; i++) a.push(String(i)); return `${a.join('\n')}\n`; };
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const MEM = sha(lines(200001, 700000));
const FILE = sha(lines(1, 500000));
const MiB = 1 << 20;

const login = (d: TestDaemon) => CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
const port80 = (s: Server) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80'];

async function check(hostPort: string, stage: string): Promise<{ mem: string; file: string }> {
  const r = await httpGet(hostPort, '/cgi-bin/check', 120_000).catch((e: Error) => { throw new Error(`${stage}: GET /cgi-bin/check: ${e.message}`); });
  assert.equal(r.status, 200, r.body);
  return { mem: /^mem (\S*)/m.exec(r.body)?.[1] ?? '', file: /^file (\S*)/m.exec(r.body)?.[1] ?? '' };
}

describe('discards: memory and file patterns intact after build, synthesis and handoff (real QEMU)', function () {
  this.timeout(900_000);
  let th: TempHome;
  let built: BuildResult;
  const daemons: TestDaemon[] = [];

  before(async () => {
    th = await tempHome();
    built = await runBuild(th.manager, loadBuildFile(path.join(projectRoot(), 'test/fixtures/discard-backend')), { base: th.baseId });
  });
  after(async () => {
    for (const d of daemons) { await d.stop(); killProcessesUsing(d.dataDir); }
    await th?.cleanup();
  });

  it('the build ran both discards and left the freed random bytes out of the overlay', () => {
    const d = built.overlay.discard;
    assert.ok(d, 'a discard report');
    assert.deepEqual(d.skipped, []);
    assert.ok((d.diskFreedBytes ?? 0) >= 7 * MiB, `disk layer bytes freed by fstrim: ${d.diskFreedBytes}`);
    assert.ok((d.memoryZeroedBytes ?? 0) >= 16 * MiB, `free memory zeroed: ${d.memoryZeroedBytes}`);
    // 8 MiB + 24 MiB of random bytes were written and freed: without the discards they would be
    // (mostly) in the overlay, and random bytes do not compress.
    assert.ok(built.overlay.bytes < 12 * MiB, `overlay of ${built.overlay.bytes} bytes`);
    assert.ok(built.overlay.manifest.breakdown.disk.payloadBytes < 4 * MiB, `disk payload ${built.overlay.manifest.breakdown.disk.payloadBytes}`);
  });

  it('the patterns read back after synthesis on a daemon and after a live handoff to another', async () => {
    const [a, b] = [await startDaemon({ ip: '127.0.0.41', withTestBase: true }), await startDaemon({ ip: '127.0.0.42', withTestBase: true })];
    daemons.push(a, b);
    const ca = await login(a), cb = await login(b);
    const { id, jobId } = await ca.createServer({ name: 'discarded', overlayUrl: await uploadOverlay(ca, built.overlay.path, 'discard-backend') });
    const synth = await ca.watchJob(jobId!);
    assert.equal(synth.status, 'DONE', `synthesis: ${synth.error}`);
    const src = await ca.getServer(id);
    assert.deepEqual(await check(port80(src), 'after synthesis'), { mem: MEM, file: FILE }, 'after synthesis');

    const { jobId: hj } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'moved' });
    const end = await ca.watchJob(hj);
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const moved = (await cb.listServers()).find((s) => s.id === (end.result as HandoffReport).destination_server_id);
    assert.ok(moved, 'the moved server at the destination');
    assert.deepEqual(await check(port80(moved), 'after handoff'), { mem: MEM, file: FILE }, 'after handoff');
    await cb.deleteServer(moved.id);
  });
});
