/**
 * Live handoff between two real daemons (127.0.0.2 -> 127.0.0.3) with real QEMU: the sample
 * back-end's in-RAM counter goes on at the destination, the source VM is gone, the report holds
 * plausible numbers. Faults: a destination without the base refuses before the VM is touched; a
 * destination killed in the middle (at its finish step) leaves the VM running at the source with
 * its counter intact. The RAM compare runs in the daemon's thread by default; with worker threads
 * (CLOUDLET_HANDOFF_COMPARE_WORKERS=2) the VM moves all the same, and on a real file both find
 * exactly the same changed pages; workers gone, the compare falls back to the in-thread one. A VM
 * synthesized from a wire-profile overlay sends its xz units as round 0 (feature xz-units), and to a
 * destination that does not name the feature round 0 goes by compare.
 */
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ShadowPageTracker } from '../../sandbox/handoff/dirtyPageTracker';
import { OverlayReader } from '../../sandbox/overlay/overlayReader';
import { PROFILES, recompressOverlay } from '../../sandbox/overlay/recompress';
import { publishOverlay } from '../../sandbox/registry';
import { startRegistry } from './fixtures/registry';
import { consoleRun, consoleSocketUnder, port80 } from './fixtures/guestConsole';
import { startDaemon, killProcessesUsing, launchDigestsOf, type TestDaemon, TEST_USERS } from './fixtures/daemon';
import { sampleOverlay, uploadOverlay, counter, httpGet } from './fixtures/sampleOverlay';
import { CloudletClient, type HandoffReport, type Server } from '../../sandbox/client';
import { TEST_BASE_RAM_MIB, ensureTestBase, flipByte, qemuPidsUnder, replaceWithCopy } from './fixtures/testBase';

const login = (d: TestDaemon, user: keyof typeof TEST_USERS = 'alice') =>
  CloudletClient.login({ authUrl: d.authUrl, username: user, password: TEST_USERS[user], project: user === 'bob' ? 'other' : 'demo' });

async function synthesize(c: CloudletClient, overlayUrl: string, name: string): Promise<Server> {
  const { id, jobId } = await c.createServer({ name, overlayUrl });
  const end = await c.watchJob(jobId!);
  assert.equal(end.status, 'DONE', `synthesis: ${end.error}`);
  return c.getServer(id);
}

describe('handoff between two daemons with real QEMU', function () {
  this.timeout(900_000);
  let overlay: string;
  let a: TestDaemon;
  const extra: TestDaemon[] = [];

  before(async () => {
    overlay = await sampleOverlay();
    a = await startDaemon({ ip: '127.0.0.2', withTestBase: true });
  });
  after(async () => {
    for (const d of [a, ...extra]) { if (d) { await d.stop(); killProcessesUsing(d.dataDir); } }
  });

  it('moves a running VM: the counter goes on at the destination, the source VM is gone, the report is plausible', async () => {
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true });
    extra.push(b);
    const ca = await login(a), cb = await login(b);
    const src = await synthesize(ca, await uploadOverlay(ca, overlay), 'mover');
    assert.equal(await counter(port80(src)), 42);
    assert.equal(await counter(port80(src)), 43);
    // A disk write just before the handoff, synced to the virtual disk and dropped from the guest's
    // page cache: the destination can serve it only if the disk layer came along.
    const stamp = `handoff-disk-${Date.now()}`;
    await consoleRun(consoleSocketUnder(a.dataDir), `echo ${stamp} > /srv/www/disk-check.txt && sync && echo 3 > /proc/sys/vm/drop_caches && echo DISK$((40+2))SYNCED`, 'DISK42SYNCED');
    // And 2 MiB written but never flushed by the guest (no journal commit, no sync; the page cache
    // written back to QEMU at once): QEMU holds the new clusters' qcow2 mapping in its metadata cache,
    // not yet in the layer file the handoff's scans read.
    const unflushed = await consoleRun(consoleSocketUnder(a.dataDir), 'mount -o remount,commit=600 / && echo 10 > /proc/sys/vm/dirty_writeback_centisecs && echo 1 > /proc/sys/vm/dirty_expire_centisecs && '
      + 'dd if=/dev/urandom of=/srv/www/unflushed.bin bs=4096 count=512 2>/dev/null && sleep 2 && grep -E "^Dirty:" /proc/meminfo && sha256sum /srv/www/unflushed.bin && echo UNF$((40+2))DONE', 'UNF42DONE');
    const unflushedSum = /([0-9a-f]{64})\s+\/srv\/www\/unflushed\.bin/.exec(unflushed)?.[1];
    assert.ok(unflushedSum, `the guest's checksum: ${unflushed}`);

    // What round 0 leaves at the destination, computed after the synthesis (nice 19): used as kept.
    await launchDigestsOf(a);
    const events: string[] = [];
    const { jobId } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'moved' });
    const end = await ca.watchJob(jobId, (e) => events.push(e.phase));
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const r = end.result as HandoffReport;

    // Report: present and plausible.
    assert.ok(r.bytes_sent > 0 && r.bytes_sent < TEST_BASE_RAM_MIB * 1048576, `bytes_sent ${r.bytes_sent}`);
    assert.ok(r.downtime_ms > 0 && r.downtime_ms < r.total_ms, `downtime ${r.downtime_ms} of ${r.total_ms}`);
    // The guest's pause by QEMU's event stamps (one host here): source STOP -> destination RESUME,
    // inside the source's figure (which ends only when finish's answer came back).
    assert.ok(typeof r.stopped_at_ms === 'number' && typeof r.resumed_at_ms === 'number', `event times: ${r.stopped_at_ms} ${r.resumed_at_ms}`);
    assert.equal(r.stop_to_resume_ms, r.resumed_at_ms! - r.stopped_at_ms!);
    assert.ok(r.stop_to_resume_ms! > 0 && r.stop_to_resume_ms! <= r.downtime_ms + 1, `STOP -> RESUME ${r.stop_to_resume_ms} ms, source's downtime ${r.downtime_ms} ms`);
    assert.ok(r.rounds >= 1, `rounds ${r.rounds}`);
    assert.equal(r.phases_ms.final_finish_separate, undefined, 'the final round carried finish (one request)');
    assert.equal(r.round_bytes.length, r.rounds);
    assert.equal(r.round_bytes.reduce((x, y) => x + y, 0), r.bytes_sent);
    assert.ok(events.filter((p) => p === 'round').length === r.rounds, `a progress event per round: ${events.join(',')}`);
    // Written pages found by QEMU's own migration (no fallback), pages listed per round.
    assert.equal(r.tracking, 'qemu-migration', `tracking ${r.tracking}: ${r.tracking_fallback}`);
    assert.equal(r.tracking_fallback, undefined);
    assert.equal(r.round_pages?.length, r.rounds);
    assert.ok(r.round_pages!.every((n) => Number.isInteger(n) && n >= 0), `round_pages ${r.round_pages}`);
    assert.ok(r.round_pages![r.rounds - 1] < 2048, `the paused round sends only the last written pages: ${r.round_pages}`);
    assert.equal(r.phases_ms.final_ram_compare, undefined, `no full compare: ${JSON.stringify(r.phases_ms)}`);
    // The device state continued the base's saved state: its ROM pages not sent again (the whole is 678 KB).
    assert.equal(r.phases_ms.final_state_after_base, 1, `state after the base's: ${JSON.stringify(r.phases_ms)}`);
    assert.ok(r.phases_ms.final_device_state_bytes > 0 && r.phases_ms.final_device_state_bytes < 400_000, `device state ${r.phases_ms.final_device_state_bytes} bytes`);
    // Round 0: the overlay the VM was synthesized from, as stored (not compared), and not decoded at
    // the source either: what it leaves at the destination was kept since the synthesis.
    assert.equal(r.round0, 'launch-overlay', `round 0: ${r.round0_compare_reason}`);
    assert.match(r.round0_overlay_id ?? '', /^[0-9a-f]{64}$/);
    assert.equal(r.phases_ms.launch_round_kept_digests, 1, `kept launch digests: ${/round 0 decoded at the source: .*/.exec(a.log())?.[0]}`);
    assert.equal(r.phases_ms.launch_round_decode, undefined, `round 0 not decoded: ${JSON.stringify(r.phases_ms)}`);
    // Order on the source's event loop (requestSent.ts): round 0's first bytes written before the copy
    // of what the destination holds is built (its synchronous work would hold them back), and begin's
    // request before round 0's read.
    const p = r.phases_ms;
    assert.ok(p.at_begin_sent <= p.at_launch_round_send && p.at_launch_round_send <= p.at_launch_round_sent && p.at_launch_round_sent <= p.at_launch_round_decoded,
      `begin sent -> round 0 handed to fetch -> its first bytes written -> launch digests held: ${JSON.stringify(p)}`);
    // What the destination holds kept as page digests (no byte copy of the RAM, no shadow load).
    assert.equal(r.phases_ms.launch_round_digest_copy, 1, `digest copy: ${JSON.stringify(r.phases_ms)}`);
    assert.equal(r.phases_ms.live_shadow_load, undefined, `no byte copy: ${JSON.stringify(r.phases_ms)}`);
    // After it, QEMU's first pass is the compare (held at its gate): no read of the whole RAM here.
    assert.ok(Number.isInteger(r.phases_ms.first_pass_gate_mib), `first pass gate in phases: ${JSON.stringify(r.phases_ms)}`);
    // Held there, unless QEMU stopped the VM before the gate (its budget x bandwidth covered the rest of the pass: reported 0).
    assert.ok([0, 1].includes(r.phases_ms.first_pass_gate_reached), `gate reached or not in phases: ${JSON.stringify(r.phases_ms)}`);
    if (r.phases_ms.first_pass_gate_reached === 1) assert.ok(Number.isInteger(r.phases_ms.first_pass_gate_round ?? r.phases_ms.first_pass_gate_wait), `the first pass was held at the gate: ${JSON.stringify(r.phases_ms)}`);
    // Held at the late gate (nearer the pass's end) only once the first one was opened.
    if (r.phases_ms.at_late_gate_held !== undefined) {
      assert.equal(r.phases_ms.first_pass_gate_reached, 1, `the late gate after the first: ${JSON.stringify(r.phases_ms)}`);
      assert.ok(r.phases_ms.at_late_gate_held >= r.phases_ms.at_first_pass_gate_open, `held at the late gate after the first opened: ${JSON.stringify(r.phases_ms)}`);
    }
    assert.equal(r.phases_ms.compare_round_ram_scan, undefined, `no compare round: ${JSON.stringify(r.phases_ms)}`);
    // Written disk chunks found by QEMU's block dirty bitmap: the paused scan reads only those.
    assert.equal(r.disk_tracking, 'qemu-dirty-bitmap', `disk tracking ${r.disk_tracking}: ${r.disk_tracking_fallback}`);
    assert.ok(Number.isInteger(r.phases_ms.final_disk_written_chunks), `written chunks in phases: ${JSON.stringify(r.phases_ms)}`);
    assert.ok(Number.isInteger(r.phases_ms.final_disk_remapped_chunks), `remapped chunks in phases: ${JSON.stringify(r.phases_ms)}`);

    // Source: server gone, no QEMU.
    await assert.rejects(ca.getServer(src.id), /could not be found|404/);
    assert.deepEqual(qemuPidsUnder(a.dataDir), []);
    assert.equal((await ca.listServers()).length, 0);

    // Destination: the server is in the token's project, ACTIVE, with the report in its metadata.
    const moved = (await cb.listServers()).find((s) => s.name === 'moved');
    assert.ok(moved, 'the moved server is listed at the destination');
    assert.equal(moved.id, r.destination_server_id);
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(moved.metadata.handoff_bytes_sent, String(r.bytes_sent));
    assert.equal(moved.metadata.handoff_downtime_ms, String(r.downtime_ms));
    assert.equal(qemuPidsUnder(b.dataDir).length, 1);
    assert.equal((await (await login(b, 'bob')).listServers()).length, 0, 'another project does not see it');

    // The in-RAM counter went on, and the disk write made just before is there.
    assert.equal(await counter(port80(moved)), 44);
    const page = await httpGet(port80(moved), '/disk-check.txt');
    assert.equal(page.status, 200, `disk-check.txt at the destination: HTTP ${page.status}`);
    assert.equal(page.body.trim(), stamp);
    // The unflushed file reads the same from the destination's disk (its page cache dropped first).
    const there = await consoleRun(consoleSocketUnder(b.dataDir), 'echo 3 > /proc/sys/vm/drop_caches && sha256sum /srv/www/unflushed.bin && echo CHK$((40+2))DONE', 'CHK42DONE');
    assert.equal(/([0-9a-f]{64})\s+\/srv\/www\/unflushed\.bin/.exec(there)?.[1], unflushedSum, `unflushed.bin at the destination: ${there}`);
    await cb.deleteServer(moved.id);
    assert.deepEqual(qemuPidsUnder(b.dataDir), []);
  });

  it('a destination without the base refuses before the VM is touched', async () => {
    const nob = await startDaemon({ ip: '127.0.0.4' });
    extra.push(nob);
    const ca = await login(a), cn = await login(nob);
    const src = await synthesize(ca, await uploadOverlay(ca, overlay, 'nobase'), 'stay');
    assert.equal(await counter(port80(src)), 42);
    const { jobId } = await ca.handoff(src.id, { handoffUrl: cn.endpoint('compute'), destToken: cn.token });
    const end = await ca.watchJob(jobId);
    assert.equal(end.status, 'ERROR');
    assert.match(end.error!, /does not hold base [0-9a-f]{64}/);
    assert.match(end.error!, /kept running at the source/);
    const s = await ca.getServer(src.id);
    assert.equal(s.status, 'ACTIVE');
    assert.equal(s['OS-EXT-STS:task_state'], null);
    assert.equal(await counter(port80(s)), 43);
    await ca.deleteServer(src.id);
  });

  it('a handoff begin takes only the MAC from the caller\'s vm_config: injected QEMU options are refused or ignored', async () => {
    const ca = await login(a);
    const { baseId } = await ensureTestBase();
    const begin = (vm: Record<string, unknown>) => fetch(`${ca.endpoint('compute')}/os-cloudlet-handoff`, { method: 'POST',
      headers: { 'x-auth-token': ca.token, 'content-type': 'application/json' },
      body: JSON.stringify({ handoff: { name: 'inj', base_id: baseId, ports: [80], vm_config: { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: TEST_BASE_RAM_MIB << 20, vcpus: 1, ...vm } } }) });
    const bad = await begin({ nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56,romfile=/etc/shadow' } });
    assert.equal(bad.status, 400, await bad.text());
    assert.deepEqual(qemuPidsUnder(a.dataDir), [], 'no QEMU started');
    // Everything but the MAC comes from the base here: an injected NIC model or kernel command line never reaches QEMU.
    const ok = await begin({ nic: { model: 'virtio-net-pci,romfile=/etc/shadow', mac: '52:54:00:12:34:56' }, cpuModel: 'qemu64,x=y', kernel: { append: 'init=/bin/evil' } });
    assert.equal(ok.status, 201, await ok.clone().text());
    const sid = ((await ok.json()) as any).session.id as string;
    try {
      for (let i = 0; i < 100 && qemuPidsUnder(a.dataDir).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(qemuPidsUnder(a.dataDir).length, 1, 'the destination QEMU waits for the rounds');
      for (const pid of qemuPidsUnder(a.dataDir)) {
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        assert.ok(!cmd.includes('romfile') && !cmd.includes('x=y') && !cmd.includes('init=/bin/evil'), cmd.replace(/\0/g, ' '));
        assert.ok(cmd.includes('mac=52:54:00:12:34:56'), 'the caller\'s MAC is kept');
      }
    } finally {
      const del = await fetch(`${ca.endpoint('compute')}/os-cloudlet-handoff/${sid}`, { method: 'DELETE', headers: { 'x-auth-token': ca.token } });
      assert.equal(del.status, 204);
    }
  });

  it('the destination killed in the middle of a handoff: the VM still runs at the source, counter intact', async () => {
    // The failpoint stops the destination at its finish step: every round is in, the source VM is paused.
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-finish' } });
    extra.push(b);
    const ca = await login(a), cb = await login(b);
    const src = await synthesize(ca, await uploadOverlay(ca, overlay, 'cut'), 'survivor');
    assert.equal(await counter(port80(src)), 42);
    const { jobId } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token });
    const ended = ca.watchJob(jobId);
    const deadline = Date.now() + 600_000;
    while (!b.log().includes('FAILPOINT handoff-finish')) {
      if (Date.now() > deadline) throw new Error(`the destination never reached its finish step:\n${b.log()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal((await ca.getServer(src.id))['OS-EXT-STS:task_state'], 'migrating');
    await b.kill('SIGKILL');
    // finish was sent: the source resumes only once the destination (back on the same port) says the VM does not run there.
    await b.start();
    const end = await ended;
    assert.equal(end.status, 'ERROR');
    assert.match(end.error!, /handoff to 127\.0\.0\.3:\d+ failed/);
    assert.match(end.error!, /resumed at the source/);
    const s = await ca.getServer(src.id);
    assert.equal(s.status, 'ACTIVE');
    assert.equal(s['OS-EXT-STS:task_state'], null);
    assert.match(s.metadata.handoff_error ?? '', /failed/);
    assert.equal(qemuPidsUnder(a.dataDir).length, 1, qemuPidsUnder(a.dataDir).map((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8')).join('\n'));
    assert.equal(await counter(port80(s)), 43, 'the counter goes on from where it was');
    assert.equal(await counter(port80(s)), 44);
    await ca.deleteServer(src.id);
  });

  it('the answer to finish lost after the destination resumed the VM: the source asks, lets go of its copy, the VM runs once', async () => {
    // A destination with state-after-base turned off (CLOUDLET_HANDOFF_STATE_AFTER_BASE=0: it names final-finish only,
    // as the release before it): it gets the whole device state.
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-finish-response', CLOUDLET_HANDOFF_STATE_AFTER_BASE: '0' } });
    extra.push(b);
    const ca = await login(a), cb = await login(b);
    const src = await synthesize(ca, await uploadOverlay(ca, overlay, 'lost'), 'lost-answer');
    assert.equal(await counter(port80(src)), 42);
    const { jobId } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'lost-moved' });
    const end = await ca.watchJob(jobId);
    assert.ok(b.log().includes('FAILPOINT handoff-finish-response'), 'the destination dropped finish\'s answer');
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const r = end.result as HandoffReport;
    assert.equal(r.phases_ms.final_state_after_base, 0, `the whole device state: ${JSON.stringify(r.phases_ms)}`);
    assert.ok(r.phases_ms.final_device_state_bytes > 400_000, `device state ${r.phases_ms.final_device_state_bytes} bytes`);
    await assert.rejects(ca.getServer(src.id), /could not be found|404/);
    assert.deepEqual(qemuPidsUnder(a.dataDir), [], 'the source did not resume its copy');
    const moved = await cb.getServer(r.destination_server_id);
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(qemuPidsUnder(b.dataDir).length, 1);
    assert.equal(await counter(port80(moved)), 43, 'the VM runs at the destination, from where it was');
    await cb.deleteServer(moved.id);
  });

  it('the source killed after the destination resumed the VM (finish\'s answer lost): restarted, it asks and lets go of its copy, the VM runs once', async () => {
    // The destination drops finish's answer after resuming the VM; the source stops right after (to be killed there).
    const s0 = await startDaemon({ ip: '127.0.0.6', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-confirm' } });
    extra.push(s0);
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-finish-response' } });
    extra.push(b);
    const c0 = await login(s0), cb = await login(b);
    const src = await synthesize(c0, await uploadOverlay(c0, overlay, 'crash'), 'source-crash');
    assert.equal(await counter(port80(src)), 42);
    await c0.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'crash-moved' });
    const deadline = Date.now() + 600_000;
    while (!s0.log().includes('FAILPOINT handoff-confirm')) {
      if (Date.now() > deadline) throw new Error(`the source never lost finish's answer:\n${s0.log()}\n${b.log()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(b.log().includes('FAILPOINT handoff-finish-response'));
    assert.equal(qemuPidsUnder(s0.dataDir).length, 1, 'the paused source VM outlives the daemon');
    // The token for the destination is not in the server's API-visible fields.
    assert.ok(!JSON.stringify(await c0.getServer(src.id)).includes(cb.token));
    await s0.kill('SIGKILL');
    await s0.start();
    const c1 = await login(s0);
    const until = Date.now() + 60_000;
    for (;;) {
      const gone = await c1.getServer(src.id).then(() => false, (e) => /could not be found|404/.test(String(e)));
      if (gone) break;
      if (Date.now() > until) throw new Error(`the source server is still there: ${JSON.stringify(await c1.getServer(src.id))}`);
      await new Promise((res) => setTimeout(res, 250));
    }
    assert.deepEqual(qemuPidsUnder(s0.dataDir), [], 'the source QEMU is gone');
    const moved = (await cb.listServers()).find((s) => s.name === 'crash-moved');
    assert.ok(moved, 'the moved server is listed at the destination');
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(qemuPidsUnder(b.dataDir).length, 1);
    assert.equal(await counter(port80(moved)), 43, 'the VM runs at the destination, from where it was');
    await cb.deleteServer(moved.id);
  });

  it('the source killed after finish, the destination gone too: restarted, the source leaves its VM paused with a fault saying the outcome is unknown', async () => {
    const s0 = await startDaemon({ ip: '127.0.0.6', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-confirm', CLOUDLET_HANDOFF_RECOVER_MS: '3000' } });
    extra.push(s0);
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { CLOUDLET_FAILPOINT: 'handoff-finish-response' } });
    extra.push(b);
    const c0 = await login(s0), cb = await login(b);
    const src = await synthesize(c0, await uploadOverlay(c0, overlay, 'unknown'), 'source-unknown');
    assert.equal(await counter(port80(src)), 42);
    await c0.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'unknown-moved' });
    const deadline = Date.now() + 600_000;
    while (!s0.log().includes('FAILPOINT handoff-confirm')) {
      if (Date.now() > deadline) throw new Error(`the source never lost finish's answer:\n${s0.log()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    await s0.kill('SIGKILL');
    await b.kill('SIGKILL');
    killProcessesUsing(b.dataDir);
    await s0.start();
    const c1 = await login(s0);
    const until = Date.now() + 60_000;
    let s = await c1.getServer(src.id);
    while (s['OS-EXT-STS:task_state'] === 'migrating') {
      if (Date.now() > until) throw new Error(`still migrating: ${JSON.stringify(s)}`);
      await new Promise((res) => setTimeout(res, 250));
      s = await c1.getServer(src.id);
    }
    assert.equal(s.status, 'PAUSED', JSON.stringify(s));
    assert.match(String((s.fault as { message?: string } | undefined)?.message), /did not say whether it runs the VM.*unpause this one by hand only if it does not run there/);
    assert.equal(qemuPidsUnder(s0.dataDir).length, 1, 'the source VM is kept, paused');
    await c1.deleteServer(src.id);
  });

  it('a destination whose state.bin of the base differs (same base ID): the source sends the whole device state, never continues another base state', async () => {
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true });
    extra.push(b);
    // One byte changed inside the saved state's ROM pages, the manifest's hash made to match (the base ID does not cover state.bin).
    const basesDir = path.join(b.dataDir, 'bases');
    const baseDir = path.join(basesDir, fs.readdirSync(basesDir).find((d) => /^[0-9a-f]{64}$/.test(d))!);
    // (flipByte and replaceWithCopy break the hard links to the shared cached base first.)
    const stateFile = path.join(baseDir, 'state.bin');
    flipByte(stateFile, Math.floor(fs.statSync(stateFile).size / 2));
    const state = fs.readFileSync(stateFile);
    const manifestFile = path.join(baseDir, 'manifest.json');
    replaceWithCopy(manifestFile);
    const m = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { files: Record<string, { sha256: string }> };
    const other = crypto.createHash('sha256').update(state).digest('hex');
    m.files['state.bin'].sha256 = other;
    fs.writeFileSync(manifestFile, JSON.stringify(m));
    const ca = await login(a), cb = await login(b);
    const src = await synthesize(ca, await uploadOverlay(ca, overlay, 'otherstate'), 'other-state');
    assert.equal(await counter(port80(src)), 42);
    // And the kept launch digests torn (as by a crash mid-write): refused, round 0 decoded at the source.
    const kept = await launchDigestsOf(a);
    fs.truncateSync(kept, fs.statSync(kept).size - 100);
    const { jobId } = await ca.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'other-state-moved' });
    const end = await ca.watchJob(jobId);
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const r = end.result as HandoffReport;
    assert.equal(r.phases_ms.launch_round_kept_digests, undefined, `torn digests not used: ${JSON.stringify(r.phases_ms)}`);
    assert.ok(Number.isInteger(r.phases_ms.launch_round_decode), `round 0 decoded: ${JSON.stringify(r.phases_ms)}`);
    assert.match(a.log(), /round 0 decoded at the source: the launch digests file is torn/);
    assert.equal(r.phases_ms.final_state_after_base, 0, `the whole device state: ${JSON.stringify(r.phases_ms)}`);
    assert.ok(r.phases_ms.final_device_state_bytes > 400_000, `device state ${r.phases_ms.final_device_state_bytes} bytes`);
    assert.ok(a.log().includes(`state.bin of base`) && a.log().includes(other.slice(0, 12)), 'the source says why');
    const moved = (await cb.listServers()).find((x) => x.name === 'other-state-moved')!;
    assert.equal(await counter(port80(await cb.getServer(moved.id))), 43, 'the counter goes on at the destination');
    await cb.deleteServer(moved.id);
  });

  it('a VM synthesized from a wire-profile overlay (xz units): from oci:// (published with the wire profile to a real registry) its file is kept and round 0 is its units as stored, each decoded at the destination as it arrives; one from the uploaded wire file to a destination without xz-units gets round 0 by compare', async () => {
    const reg = await startRegistry();
    try {
      const pub = await publishOverlay(overlay, `${reg.host}/apps/wire:v1`, { profile: 'wire', credentials: null, storeRoot: path.join(a.dataDir, 'tmp', `pub-${process.pid}`) });
      assert.equal(pub.profile, 'wire');
      const wire = await recompressOverlay(overlay, path.join(a.dataDir, 'tmp', `wire-${process.pid}.overlay`), { codec: PROFILES.wire });
      assert.equal(wire.overlayId, pub.overlayId);
      const wireUnits = (() => { const r = OverlayReader.open(wire.path); try { return r.manifest.compression.algorithm === 'xz' ? r.manifest.compression.units : []; } finally { r.close(); } })();
      assert.ok(wireUnits.length >= 2, 'RAM, disk and device-state units');
      const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true });
      extra.push(b);
      // A destination of the release before xz-units (it names the other features).
      const old = await startDaemon({ ip: '127.0.0.4', withTestBase: true, env: { CLOUDLET_HANDOFF_FEATURES: 'final-finish,state-after-base' } });
      extra.push(old);
      const ca = await login(a), cb = await login(b), cold = await login(old);
      const uploaded = await uploadOverlay(ca, wire.path, 'wire');
      const keptFile = fs.readFileSync(wire.path);
      fs.rmSync(wire.path, { force: true });
      for (const [dest, c, name, url] of [[b, cb, 'moved-wire', `oci://${reg.host}/apps/wire:v1`], [old, cold, 'moved-wire-old', uploaded]] as const) {
        const src = await synthesize(ca, url, `${name}-src`);
        assert.equal(await counter(port80(src)), 42);
        assert.equal(await counter(port80(src)), 43);
        if (dest === b) {
          // The registry's overlay written again from the pulled blobs: the published file, byte for byte.
          const kept = fs.readdirSync(path.join(a.dataDir, 'sandboxes')).map((d) => path.join(a.dataDir, 'sandboxes', d, 'launch.overlay')).filter((f) => fs.existsSync(f));
          assert.equal(kept.length, 1, `one kept launch overlay: ${kept.join(', ')}`);
          assert.ok(fs.readFileSync(kept[0]).equals(keptFile), 'the kept launch overlay is the published file');
        }
        const { jobId } = await ca.handoff(src.id, { handoffUrl: c.endpoint('compute'), destToken: c.token, destVmName: name });
        const end = await ca.watchJob(jobId);
        assert.equal(end.status, 'DONE', `handoff to ${dest.url}: ${end.error}`);
        const r = end.result as HandoffReport;
        if (dest === b) {
          assert.equal(r.round0, 'launch-overlay', `round 0: ${r.round0_compare_reason}`);
          assert.equal(r.round0_overlay_id, wire.overlayId);
          // The chunk units as stored (the device state's left out), in one body with the header.
          const chunkUnits = wireUnits.slice(0, -1);
          assert.equal(r.phases_ms.launch_round_xz_units, chunkUnits.length, JSON.stringify(r.phases_ms));
          const unitBytes = chunkUnits.reduce((n, u) => n + u.size, 0);
          assert.ok(r.round_bytes[0] > unitBytes && r.round_bytes[0] < unitBytes + 65536, `round 0 is ${r.round_bytes[0]} bytes, the units ${unitBytes}`);
          assert.equal(r.phases_ms.launch_round_digest_copy, 1, `digest copy: ${JSON.stringify(r.phases_ms)}`);
        } else {
          assert.equal(r.round0, 'compare');
          assert.match(r.round0_compare_reason ?? '', /xz units .*feature xz-units not named/);
        }
        const moved = await c.getServer(r.destination_server_id);
        assert.equal(await counter(port80(moved)), 44, 'the counter goes on at the destination');
        await c.deleteServer(moved.id);
      }
      assert.deepEqual(qemuPidsUnder(a.dataDir), []);
    } finally { await reg.close(); }
  });

  it('the full RAM compare forced (CLOUDLET_HANDOFF_TRACKER=compare), on 2 worker threads, round 0 by compare (CLOUDLET_HANDOFF_LAUNCH_OVERLAY=0), to a destination of an earlier release (final round, then finish): the VM moves all the same, the report names all three', async () => {
    const src0 = await startDaemon({ ip: '127.0.0.5', withTestBase: true, env: { CLOUDLET_HANDOFF_COMPARE_WORKERS: '2', CLOUDLET_HANDOFF_TRACKER: 'compare', CLOUDLET_HANDOFF_LAUNCH_OVERLAY: '0' } });
    extra.push(src0);
    // A destination naming no protocol features in begin's answer, as one before final-finish did.
    const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true, env: { CLOUDLET_HANDOFF_FEATURES: '' } });
    extra.push(b);
    const c0 = await login(src0), cb = await login(b);
    const src = await synthesize(c0, await uploadOverlay(c0, overlay, 'workers'), 'workers');
    assert.equal(await counter(port80(src)), 42);
    assert.equal(await counter(port80(src)), 43);
    const { jobId } = await c0.handoff(src.id, { handoffUrl: cb.endpoint('compute'), destToken: cb.token, destVmName: 'moved-workers' });
    const end = await c0.watchJob(jobId);
    assert.equal(end.status, 'DONE', `handoff: ${end.error}`);
    const r = end.result as HandoffReport;
    assert.equal(r.phases_ms.final_ram_compare_workers, 2, JSON.stringify(r.phases_ms));
    assert.equal(r.tracking, 'full-compare');
    assert.match(r.tracking_fallback ?? '', /CLOUDLET_HANDOFF_TRACKER=compare/);
    assert.ok(r.round_pages!.length === r.rounds && r.round_pages![0] > 0, `round_pages ${r.round_pages}`);
    assert.equal(r.round0, 'compare');
    assert.match(r.round0_compare_reason ?? '', /CLOUDLET_HANDOFF_LAUNCH_OVERLAY=0/);
    assert.equal(r.phases_ms.final_finish_separate, 1, 'the final round and finish went as two requests');
    const moved = await cb.getServer(r.destination_server_id);
    assert.equal(await counter(port80(moved)), 44);
    await cb.deleteServer(moved.id);
    assert.deepEqual(qemuPidsUnder(src0.dataDir), []);
  });
});

describe('handoff RAM compare: worker threads and the in-thread fallback on a real file', function () {
  this.timeout(120_000);
  const PAGES = 4096; // 16 MiB
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'handoff-cmp-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A base image, and a copy with some pages changed (single bytes, whole pages, a run across a 64 KiB span edge). */
  function images(): { base: string; cur: string; changed: number[] } {
    const base = path.join(dir, 'base.raw'), cur = path.join(dir, 'cur.raw');
    const b = Buffer.alloc(PAGES * 4096);
    for (let i = 0; i < b.length; i += 8) b.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(base, b);
    const changed = [0, 1, 15, 16, 17, 1000, 2047, 2048, 4095];
    for (const p of changed) b[p * 4096 + (p % 4096)] ^= 0xff;
    fs.writeFileSync(cur, b);
    return { base, cur, changed };
  }

  async function scan(t: ShadowPageTracker, file: string): Promise<number[]> {
    const got: number[] = [];
    await t.scanFile(file, async (i, page) => { got.push(i); assert.equal(page.length, 4096); });
    return got.sort((x, y) => x - y);
  }

  it('two workers find exactly the pages the in-thread compare finds, then nothing more', async () => {
    const { base, cur, changed } = images();
    const inThread = new ShadowPageTracker(base, PAGES);
    const workers = new ShadowPageTracker(base, PAGES, { workers: 2 });
    try {
      assert.deepEqual(await scan(inThread, cur), changed);
      assert.deepEqual(await scan(workers, cur), changed);
      assert.equal(workers.lastScan.method, 'workers');
      assert.deepEqual(await scan(workers, cur), [], 'what was sent is recorded: a second scan finds nothing');
    } finally { await inThread.close(); await workers.close(); }
  });

  it('loaded off the event loop (ShadowPageTracker.load, 8 MiB reads), the copy is the same: the same pages found', async () => {
    const { base, cur, changed } = images();
    for (const workers of [0, 2]) {
      const t = await ShadowPageTracker.load(base, PAGES, { workers });
      try {
        assert.deepEqual(await scan(t, cur), changed, `${workers} workers`);
        assert.deepEqual(await scan(t, cur), []);
      } finally { await t.close(); }
    }
  });

  it('workers gone: the scan falls back to the in-thread compare and still finds every change', async () => {
    const { base, cur, changed } = images();
    const t = new ShadowPageTracker(base, PAGES, { workers: 2 });
    await t.close(); // the workers exit, as if they had crashed
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await scan(t, cur), changed);
    assert.equal(t.lastScan.method, 'in-thread');
    assert.match(t.lastScan.fallbackReason ?? '', /exited/);
  });
});
