/**
 * Issue 18.2, correctness above speed: a guest process writes a changing pattern continuously (16
 * pages of tmpfs RAM per step, cycling over 4096 pages, and one line per step appended to a file on
 * the virtual disk) while the VM is handed back and forth between two real daemons, many times, on
 * a machine that is busy anyway and now and then with extra CPU burners on the host. After each
 * handoff:
 *   - the RAM file the destination loads is byte-identical to the source's paused RAM
 *     (CLOUDLET_HANDOFF_VERIFY_RAM=1 makes both daemons hash it: every write before the pause arrived);
 *   - in the guest (writer stopped), the pattern file and the log file (page cache dropped, read back
 *     from the virtual disk) have exactly the checksums the writer's last step implies, and the
 *     writer made progress during the handoff;
 *   - the in-RAM counter goes on by one.
 * Once, the destination is killed at its finish step (every round in, the VM paused): the VM runs on
 * at the source with its writer and its data intact.
 * CLOUDLET_HANDOFF_REPEAT (default 3) sets how many successful handoffs; the figure is 20.
 */
import { strict as assert } from 'assert';
import { spawn, type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import { consoleRun as consoleRunFor, consoleSocketUnder, port80 } from './fixtures/guestConsole';
import { startDaemon, killProcessesUsing, launchDigestsOf, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { sampleOverlay, uploadOverlay, counter } from './fixtures/sampleOverlay';
import { CloudletClient, type HandoffReport } from '../../sandbox/client';
import { qemuPidsUnder } from './fixtures/testBase';

const REPEAT = Math.max(1, Number(process.env.CLOUDLET_HANDOFF_REPEAT ?? 3) || 3);
const SLOTS = 256, PAGES_PER_SLOT = 16, PAGE = 4096;

const login = (d: TestDaemon) => CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
/** The console with this file's longer wait (a check drops the guest's page cache under load). */
const consoleRun = (sock: string, cmd: string, marker: string) => consoleRunFor(sock, cmd, marker, 180_000);

// The writer: step i writes 16 pages holding i (as %010d, space padded, newline-ended) at slot
// i % 256 of /tmp/pat/ram (tmpfs: guest RAM), appends i to /srv/www/writes.log (virtual disk),
// then records i in /tmp/pat/last (by rename: a writer stopped inside `echo $i > last` left it
// empty once in 20 handoffs). The pattern of step i is staged in a file first: dd from a pipe
// may write a short block.
const WRITER = 'mkdir -p /tmp/pat; rm -f /tmp/pat/* /srv/www/writes.log; dd if=/dev/zero of=/tmp/pat/ram bs=65536 count=256 2>/dev/null; '
  + '( i=0; while :; do i=$((i+1)); v=$(printf %010d $i); printf "%-4095s\\n" $v $v $v $v $v $v $v $v $v $v $v $v $v $v $v $v > /tmp/pat/step; '
  + 'dd if=/tmp/pat/step of=/tmp/pat/ram bs=65536 seek=$((i%256)) count=1 conv=notrunc 2>/dev/null; echo $v >> /srv/www/writes.log; echo $i > /tmp/pat/last.t; mv /tmp/pat/last.t /tmp/pat/last; done ) '
  + '>/dev/null 2>&1 & echo $! > /tmp/pat/pid; echo WRITER$((40+2))UP';

/** Expected checksums of the pattern file after step n, and of the log after step n. */
function patternMd5(n: number): string {
  const h = crypto.createHash('md5');
  for (let s = 0; s < SLOTS; s++) {
    // The last step i <= n with i % 256 == s (slot 0 is written by step 256, 512, ...).
    const i = n - ((((n - s) % SLOTS) + SLOTS) % SLOTS);
    if (i < 1) { h.update(Buffer.alloc(PAGE * PAGES_PER_SLOT)); continue; }
    const page = Buffer.from(`${String(i).padStart(10, '0').padEnd(4095, ' ')}\n`, 'latin1');
    for (let k = 0; k < PAGES_PER_SLOT; k++) h.update(page);
  }
  return h.digest('hex');
}
function logMd5(n: number): string {
  const h = crypto.createHash('md5');
  for (let i = 1; i <= n; i++) h.update(`${String(i).padStart(10, '0')}\n`);
  return h.digest('hex');
}

/**
 * Stops the writer, drops the guest's page cache (the log is read back from the virtual disk),
 * checks both checksums against what its last step implies, and lets it go on. Returns that step.
 */
async function checkWriter(sock: string, what: string): Promise<number> {
  const out = await consoleRun(sock, 'kill -STOP $(cat /tmp/pat/pid); sync; echo 3 > /proc/sys/vm/drop_caches; echo "L=$(cat /tmp/pat/last)"; md5sum /tmp/pat/ram /srv/www/writes.log; kill -CONT $(cat /tmp/pat/pid); echo CHECK$((40+2))DONE', 'CHECK42DONE');
  const last = Number(/L=(\d+)/.exec(out)?.[1]);
  const ram = /([0-9a-f]{32})\s+\/tmp\/pat\/ram/.exec(out)?.[1];
  const log = /([0-9a-f]{32})\s+\/srv\/www\/writes\.log/.exec(out)?.[1];
  assert.ok(Number.isInteger(last) && last > 0 && ram && log, `${what}: the check printed no step or checksums: ${out.slice(-600)}`);
  // Stopped between its dd and its `last`: the pattern (and maybe the log) are one step ahead.
  const states = [[last, last], [last + 1, last], [last + 1, last + 1]];
  const ok = states.some(([r, l]) => patternMd5(r) === ram && logMd5(l) === log);
  assert.ok(ok, `${what}: after step ${last} the pattern file (${ram}) or the log (${log}) is not what the writer wrote`);
  return last;
}

async function handoff(from: CloudletClient, to: CloudletClient, id: string, name: string): Promise<HandoffReport> {
  const { jobId } = await from.handoff(id, { handoffUrl: to.endpoint('compute'), destToken: to.token, destVmName: name });
  const end = await from.watchJob(jobId);
  assert.equal(end.status, 'DONE', `handoff ${name}: ${end.error}`);
  return end.result as HandoffReport;
}

/** N busy loops on the host for the duration of `fn` (host load during a handoff). */
async function underLoad<T>(n: number, fn: () => Promise<T>): Promise<T> {
  const burners: ChildProcess[] = [];
  for (let i = 0; i < n; i++) burners.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  try { return await fn(); } finally { for (const b of burners) b.kill('SIGKILL'); }
}

describe('handoff correctness: a guest writing continuously, handed off again and again (real daemons, QEMU)', function () {
  this.timeout(REPEAT * 600_000 + 1_200_000);
  const daemons: TestDaemon[] = [];
  const env = { CLOUDLET_HANDOFF_VERIFY_RAM: '1' };

  after(async () => {
    for (const d of daemons) { await d.stop(); killProcessesUsing(d.dataDir); }
  });

  it(`${REPEAT} handoffs back and forth with a writer running: every write before each pause is at the destination; the destination killed once, the VM runs on at the source`, async () => {
    const overlay = await sampleOverlay();
    // a runs the default path: after the synthesis it keeps the launch digests, and its first handoff builds
    // what the destination holds from them (no decode of round 0): the RAM check below verifies those bytes.
    const a = await startDaemon({ ip: '127.0.0.2', withTestBase: true, env: { ...env } });
    daemons.push(a);
    // b does not name state-after-base (a destination of the release before it): a sends it the whole device
    // state; b, as a source, sends a its continuation of the base's (a offers it).
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { ...env, CLOUDLET_HANDOFF_FEATURES: 'final-finish' } });
    daemons.push(b);
    const ca = await login(a), cb = await login(b);
    const { id, jobId } = await ca.createServer({ name: 'writer-0', overlayUrl: await uploadOverlay(ca, overlay) });
    assert.equal((await ca.watchJob(jobId!)).status, 'DONE');
    let server = await ca.getServer(id);
    let count = await counter(port80(server));
    await consoleRun(consoleSocketUnder(a.dataDir), WRITER, 'WRITER42UP');
    await new Promise((r) => setTimeout(r, 3000));
    await launchDigestsOf(a);
    let step = await checkWriter(consoleSocketUnder(a.dataDir), 'before the first handoff');

    const sides: Array<{ d: TestDaemon; c: CloudletClient }> = [{ d: a, c: ca }, { d: b, c: cb }];
    for (let n = 1; n <= REPEAT; n++) {
      const [src, dst] = n % 2 ? [sides[0], sides[1]] : [sides[1], sides[0]];
      const burners = n % 3 === 0 ? 2 : 0;
      const r = await underLoad(burners, () => handoff(src.c, dst.c, server.id, `writer-${n}`));
      const what = `handoff ${n}/${REPEAT}${burners ? ' (2 CPU burners on the host)' : ''}`;
      assert.equal(r.tracking, 'qemu-migration', `${what}: tracking ${r.tracking} (${r.tracking_fallback})`);
      assert.equal(r.disk_tracking, 'qemu-dirty-bitmap', `${what}: disk tracking ${r.disk_tracking} (${r.disk_tracking_fallback})`);
      assert.equal(r.phases_ms.final_state_after_base, src.d === b ? 1 : 0, `${what}: device state after the base's (${r.phases_ms.final_device_state_bytes} bytes)`);
      if (n === 1) {
        assert.equal(r.round0, 'launch-overlay', `${what}: round 0 ${r.round0_compare_reason}`);
        assert.equal(r.phases_ms.launch_round_kept_digests, 1, `${what}: the kept launch digests (${JSON.stringify(r.phases_ms)})`);
      }
      assert.ok(r.ram_sha256, `${what}: no RAM digests in the report`);
      assert.equal(r.ram_sha256.destination, r.ram_sha256.source, `${what}: the destination's RAM differs from the paused source's (pages ${JSON.stringify(r.round_pages)}, phases ${JSON.stringify(r.phases_ms)})`);
      server = await dst.c.getServer(r.destination_server_id);
      assert.equal(qemuPidsUnder(src.d.dataDir).length, 0, `${what}: the source VM is gone`);
      const now = await checkWriter(consoleSocketUnder(dst.d.dataDir), what);
      assert.ok(now > step, `${what}: the writer went on (step ${step} -> ${now})`);
      step = now;
      const c = await counter(port80(server));
      assert.equal(c, count + 1, `${what}: counter`);
      count = c;
      process.stderr.write(`      ${what}: ${r.rounds} rounds, pages ${JSON.stringify(r.round_pages)}, disk chunks ${JSON.stringify(r.round_disk_chunks)} (written since the start: ${r.phases_ms.final_disk_written_chunks}), downtime ${r.downtime_ms} ms, writer at step ${now}\n`);
    }

    // The destination killed at its finish step: every round is in and the VM paused at the source.
    const here = REPEAT % 2 ? sides[1] : sides[0];
    const cut = await startDaemon({ ip: '127.0.0.4', withTestBase: true, env: { ...env, CLOUDLET_FAILPOINT: 'handoff-finish' } });
    daemons.push(cut);
    const cc = await login(cut);
    const { jobId: hj } = await here.c.handoff(server.id, { handoffUrl: cc.endpoint('compute'), destToken: cc.token, destVmName: 'writer-cut' });
    const ended = here.c.watchJob(hj);
    const deadline = Date.now() + 600_000;
    while (!cut.log().includes('FAILPOINT handoff-finish')) {
      if (Date.now() > deadline) throw new Error(`the destination never reached its finish step:\n${cut.log()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    await cut.kill('SIGKILL');
    await cut.start();
    const end = await ended;
    assert.equal(end.status, 'ERROR');
    assert.match(end.error!, /resumed at the source/);
    const s = await here.c.getServer(server.id);
    assert.equal(s.status, 'ACTIVE');
    const after = await checkWriter(consoleSocketUnder(here.d.dataDir), 'after the destination was killed');
    assert.ok(after > step, `the writer went on at the source (step ${step} -> ${after})`);
    assert.equal(await counter(port80(s)), count + 1);
    assert.equal(qemuPidsUnder(cut.dataDir).length, 0, 'no VM left at the killed destination');
    await here.c.deleteServer(server.id);
  });
});
