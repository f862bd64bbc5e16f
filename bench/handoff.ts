/**
 * `npm run bench -- handoff [--guests test,debian] [--trials 3] [--link-mbit 25] [--link-trials 1] [--idle-ms 3000] [--compare-workers N] [--no-wire] [--wire-trials N] [--no-qemu-link]`:
 * on the test guest (128 MiB) the sample back-end (synthesized from the test base's overlay, its
 * in-RAM counter advanced), on the Debian 12 base (1 GiB) a Flask back-end (its hit counter), moved while running
 *   (a) by our handoff between two daemons on loopback (127.0.0.2 -> 127.0.0.3), and
 *   (b) by QEMU's own live migration to a second QEMU on loopback (-incoming, tcp:127.0.0.1),
 * in the same run, from the same overlay state after the same idle time. Then both again through a
 * throttling TCP proxy (default 25 Mbit/s) for total time on an edge-like link (0 to skip); QEMU's
 * link total runs until its destination has loaded everything (the proxy still holds data when the
 * source says completed).
 * Each leg runs `--trials` times, interleaved (ours, QEMU, ours, QEMU ...), every trial on a fresh VM
 * synthesized from the same overlay, so that both sides see the same varying load (the machine is
 * shared); the figures reported are each side's MEDIAN over its trials, and the ratios are ratios of
 * those medians. Per-trial figures are kept in `trials_detail` / `link_trials_detail`.
 * Downtime is the guest's pause, taken the same way on both sides from QEMU's own event stamps (both
 * QEMUs run on this host): the source QEMU's STOP event -> the destination QEMU's RESUME event.
 * QEMU's self-reported figure (query-migrate `downtime`: measured on the source, from its stop to the
 * source's completion, so without the destination loading the last data and starting the CPUs) is kept
 * as qemu_reported_downtime_ms, ours (STOP -> the source had the destination's answer) as
 * ours_source_downtime_ms. QEMU's destination starts without -S and resumes the VM by itself.
 * Prints bytes sent, downtime and total time for each; last line one JSON object with every figure,
 * ratio_bytes_vs_qemu (target <= 0.25) and ratio_downtime_vs_qemu (<= 1.0); the Debian guest's keys
 * end in _debian (ratio_downtime_vs_qemu_debian <= 1.0, ratio_bytes_vs_qemu_debian <= 0.05,
 * ratio_total_vs_qemu_debian <= 1.0, ratio_link_total_vs_qemu_debian <= 0.1), and
 * ours_pause_ms{,_debian} break our pause down (medians, see pauseBreakdown): QEMU's last pass
 * until the last page arrived (tracking), the device state, taking + encoding the last pages, the
 * disk scan, QEMU's completion, sending and applying the final round, the destination loading the
 * state and continuing.
 * The Flask overlay is made once per Debian base from the launch VM of bench overlay's realistic pair
 * (see flaskOverlay) and kept as .cache/bench-handoff/flask-<base id>.overlay.
 * On the Debian guest, then (unless --no-wire) the scenario a user gets (wireScenario): that overlay
 * published with the wire profile (xz units) to a local docker-registry and synthesized from oci://,
 * so round 0 is the xz units; keys `*_debian_wire` (ratio_bytes_vs_qemu_debian_wire,
 * ratio_total_vs_qemu_debian_wire, ratio_link_total_vs_qemu_debian_wire, ...). The `*_debian` keys
 * stay the build-profile overlay's (uploaded to the source daemon's image service).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletClient, type HandoffReport, type Server } from '../sandbox/client';
import { chooseAccel } from '../sandbox/qemu/accel';
import { qemuBinary } from '../sandbox/qemu/host';
import { freePort } from '../sandbox/qemu/ports';
import { eventTimeMs, QmpClient, type QmpEvent } from '../sandbox/qemu/qmp';
import { logTail, startVm, stopVm, vmFilesIn } from '../sandbox/qemu/vm';
import { synthesize } from '../sandbox/overlay/sandboxOverlay';
import { startDaemon, TEST_USERS, type TestDaemon } from '../test/integration/fixtures/daemon';
import { counter as sampleCounter, httpGet, sampleOverlay, uploadOverlay } from '../test/integration/fixtures/sampleOverlay';
import { ensureDebianBase, linkBaseInto, tempHome, type TempHome } from '../test/integration/fixtures/testBase';
import { createOverlay } from '../sandbox/overlay';
import { BaseStore } from '../sandbox/base/store';
import { projectCache } from '../sandbox/common/paths';
import { startThrottleProxy, type ThrottleProxy } from './lib/throttleProxy';
import { PROFILES, recompressOverlay } from '../sandbox/overlay/recompress';
import { publishOverlay } from '../sandbox/registry';
import { startRegistry } from '../test/integration/fixtures/registry';
import { warmPageCache } from '../sandbox/handoff/launchDigests';
import { warmRamEnabled } from '../sandbox/sandboxes/launchDigestsJob';

const GUESTS = (() => { const i = process.argv.indexOf('--guests'); return (i > 0 ? process.argv[i + 1] : 'test,debian').split(','); })();
const arg = (name: string, dflt: number) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
const LINK_MBIT = arg('--link-mbit', 25);
const IDLE_MS = arg('--idle-ms', 3000);
const TRIALS = Math.max(1, Math.floor(arg('--trials', 3)));
const LINK_TRIALS = Math.max(1, Math.floor(arg('--link-trials', 1)));
/** For iterating on our link time: skip QEMU's link migrations (2 min each); no link ratio is printed then. */
const QEMU_LINK = !process.argv.includes('--no-qemu-link');
/** The Debian guest's wire-profile scenario (wireScenario): on unless --no-wire; --wire-trials N (default --trials). */
const WIRE = !process.argv.includes('--no-wire');
const WIRE_TRIALS = Math.max(1, Math.floor(arg('--wire-trials', TRIALS)));
/** Compare workers at the source daemon (CLOUDLET_HANDOFF_COMPARE_WORKERS); -1 = the daemon's default. */
const COMPARE_WORKERS = arg('--compare-workers', -1);
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The guest being measured: its back-end's port and how to read its counter. */
interface Guest { key: 'test' | 'debian'; label: string; port: number; counter(hostPort: string): Promise<number> }
const TEST_GUEST: Guest = { key: 'test', label: 'test-guest 128 MiB + sample back-end', port: 80, counter: sampleCounter };
const DEBIAN_GUEST: Guest = {
  key: 'debian', label: 'Debian 12 1 GiB + Flask back-end', port: 5000,
  async counter(hostPort) {
    // 2 min, not the fixture's 30 s: a 1 GiB TCG guest on a loaded 2-core host answered its first GET
    // after a move (QEMU's side, loopback and link) in more than 30 s; the figures are taken before it.
    const r = await httpGet(hostPort, '/', 120_000);
    const m = /hit (\d+)/.exec(r.body);
    if (r.status !== 200 || !m) throw new Error(`flask: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    return Number(m[1]);
  },
};
let guest: Guest = TEST_GUEST;
const counter = (hostPort: string) => guest.counter(hostPort);
const port80 = (s: Server) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)[String(guest.port)];

/**
 * One move. `downtime_ms`: the guest's pause, measured the same way on both sides: the source QEMU's
 * STOP event -> the destination QEMU's RESUME event (QMP event stamps, the host's real-time clock;
 * both QEMUs run on this host). `reported_downtime_ms`: each side's own figure, kept for reference:
 * ours = STOP -> the source had the destination's "running" (the report's downtime_ms); QEMU's =
 * query-migrate's `downtime`, which QEMU takes on the source (its stop -> the source's completion),
 * without the destination loading the last data and starting the CPUs.
 */
interface Move {
  bytes: number; downtime_ms: number; reported_downtime_ms: number; total_ms: number; rounds?: number; phases_ms?: Record<string, number>; tracking?: string; round_pages?: number[];
  round_bytes?: number[]; round0?: string; round0_reason?: string;
  /** When the bench asked for our handoff (ms since the epoch): the at_* points count from a few ms after it. */
  requested_at_ms?: number;
  /** Through the throttling proxy: what its busiest connection did each way (throttleProxy.ts). */
  proxy?: ReturnType<ThrottleProxy['stats']>;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const medianMove = (ms: Move[]): Move => ({
  bytes: median(ms.map((m) => m.bytes)), downtime_ms: median(ms.map((m) => m.downtime_ms)), reported_downtime_ms: median(ms.map((m) => m.reported_downtime_ms)),
  total_ms: median(ms.map((m) => m.total_ms)),
  ...(ms[0].rounds !== undefined ? { rounds: median(ms.map((m) => m.rounds ?? 0)) } : {}),
});

async function ours(a: TestDaemon, b: TestDaemon, overlayUrl: string, via?: (computeUrl: string) => string): Promise<Move> {
  const ca = await CloudletClient.login({ authUrl: a.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
  const cb = await CloudletClient.login({ authUrl: b.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
  const { id, jobId } = await ca.createServer({ name: 'bench-src', overlayUrl });
  const s = await ca.watchJob(jobId!);
  if (s.status !== 'DONE') throw new Error(`synthesis: ${s.error}`);
  const before = await counter(port80(await ca.getServer(id)));
  await sleep(IDLE_MS);
  // What round 0 leaves at the destination, computed by the source daemon after the synthesis (nice 19,
  // sandbox/handoff/launchDigests.ts): the handoff starts once it is kept, as a handoff made later than
  // IDLE_MS after the synthesis would; how long after the synthesis it was ready is reported.
  const digestsReadyMs = await launchDigestsReady(a, id, Date.now() - IDLE_MS);
  const url = via ? via(cb.endpoint('compute')) : cb.endpoint('compute');
  const requestedAt = Date.now();
  const h = await ca.handoff(id, { handoffUrl: url, destToken: cb.token, destVmName: 'bench-moved' });
  const end = await ca.watchJob(h.jobId);
  if (end.status !== 'DONE') throw new Error(`handoff: ${end.error}`);
  const r = end.result as HandoffReport;
  const moved = await cb.getServer(r.destination_server_id);
  const after = await counter(port80(moved));
  if (after !== before + 1) throw new Error(`counter at the destination is ${after}, expected ${before + 1}`);
  await cb.deleteServer(moved.id);
  if (typeof r.stop_to_resume_ms !== 'number') throw new Error('the handoff report has no stop_to_resume_ms (source STOP / destination RESUME event times)');
  log(`  ours: ${r.bytes_sent} bytes in ${r.rounds} rounds, downtime (STOP -> RESUME) ${r.stop_to_resume_ms} ms (source's figure ${r.downtime_ms} ms), total ${r.total_ms} ms (${JSON.stringify(r.phases_ms)})`);
  log(`    tracking ${r.tracking}${r.tracking_fallback ? ` (fallback: ${r.tracking_fallback})` : ''}, RAM pages per round ${JSON.stringify(r.round_pages)}`);
  log(`    round 0: ${r.round0}${r.round0_compare_reason ? ` (${r.round0_compare_reason})` : ''}, round bytes ${JSON.stringify(r.round_bytes)}; launch digests ${digestsReadyMs === undefined ? 'not kept (decoded in the handoff)' : `kept ${digestsReadyMs} ms after the synthesis`}`);
  return { bytes: r.bytes_sent, downtime_ms: r.stop_to_resume_ms, reported_downtime_ms: r.downtime_ms, total_ms: r.total_ms, rounds: r.rounds, phases_ms: r.phases_ms, tracking: r.tracking, round_pages: r.round_pages,
    round_bytes: r.round_bytes, round0: r.round0, round0_reason: r.round0_compare_reason, requested_at_ms: requestedAt };
}

/**
 * Waits (up to 2 min) for the source daemon to keep the launch digests of server `id` (a file in its
 * VM folder): ms from `since` (the synthesis's end) until then, undefined if never (none computed:
 * CLOUDLET_LAUNCH_DIGESTS=0, or main before the feature).
 */
async function launchDigestsReady(a: TestDaemon, id: string, since: number): Promise<number | undefined> {
  const dir = path.join(a.dataDir, 'sandboxes');
  const file = () => {
    const vm = fs.existsSync(dir) ? fs.readdirSync(dir).find((d) => d.includes(id)) : undefined;
    return vm && fs.existsSync(path.join(dir, vm, 'launch.overlay')) ? path.join(dir, vm, 'launch.digests') : undefined;
  };
  if (process.env.CLOUDLET_LAUNCH_DIGESTS === '0') return undefined;
  for (const end = Date.now() + 120_000; Date.now() < end; await sleep(100)) {
    const f = file();
    if (!f) return undefined;
    // Its job ends after it read the VM's RAM file into the page cache (the log says so).
    const vm = path.basename(path.dirname(f));
    if (a.log().includes(`launch digests of ${vm} kept`) && fs.existsSync(f)) return Date.now() - since;
    if (a.log().includes(`launch digests of ${vm} not kept`)) return fs.existsSync(f) ? Date.now() - since : undefined;
  }
  return undefined;
}

/** QEMU's migration of the same launch VM (synthesized here) to a second QEMU sharing its disk. */
async function qemu(th: TempHome, overlay: string, n: number, throttle = false): Promise<Move> {
  const name = `qm-src-${n}`;
  const r = await synthesize(th.manager, th.baseId, overlay, { name });
  const before = await counter(`127.0.0.1:${r.sandbox.ports.find((p) => p.guest === guest.port)!.host}`);
  const layout = th.manager.layout(name);
  const kernel = th.manager.bases.get(th.baseId).kernel;
  const initrd = th.manager.bases.get(th.baseId).initrd;
  th.manager.close(); // QMP takes one client: let go of the manager's connection
  const src = await QmpClient.connect(r.sandbox.qmpSocket, 10_000);
  const dir = fs.mkdtempSync(path.join(th.home, 'qm-dst-'));
  const files = vmFilesIn(dir, { path: layout.files.disk, format: 'qcow2' }, path.join(dir, 'ram.raw'), layout.vmConfig.kernel ? { kernel: kernel!, initrd: initrd! } : undefined);
  const binary = qemuBinary();
  const { accel } = await chooseAccel(binary, layout.vmConfig.cpuModel);
  const fwd = await freePort();
  // Not paused (-S): QEMU's destination starts the CPUs by itself once it loaded the stream, as a
  // plain QEMU live migration does (a `cont` sent from here would add this script's delay to QEMU's pause).
  const dst = await startVm({ binary, name: `cloudlet-bench-qm-dst-${n}`, cfg: layout.vmConfig, files, accel, incoming: true, paused: false, ports: [{ guest: guest.port, host: fwd }] });
  let proxy: ThrottleProxy | undefined;
  // The guest's pause: the source's STOP event -> the destination's RESUME event (QEMU's stamps).
  let stopAt: number | undefined, resumeAt: number | undefined;
  const onSrc = (e: QmpEvent) => { if (e.event === 'STOP') stopAt ??= eventTimeMs(e); };
  const onDst = (e: QmpEvent) => { if (e.event === 'RESUME') resumeAt ??= eventTimeMs(e); };
  dst.qmp.on('event', onDst);
  try {
    const inPort = await freePort();
    await dst.qmp.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${inPort}` });
    let target = inPort;
    if (throttle) { const p = await startThrottleProxy({ host: '127.0.0.1', port: inPort }, LINK_MBIT * 1e6); proxy = p; target = p.port; }
    // The same page-cache state as our source VM: its daemon reads the RAM file once after the synthesis
    // (launchDigests.ts warmPageCache, unless CLOUDLET_LAUNCH_WARM_RAM=0), which spares the first pass of
    // ANY migration the allocation of the holes' pages; QEMU's migration gets that too.
    const warmMs = warmRamEnabled() ? (() => { const t = Date.now(); warmPageCache(layout.files.ram); return Date.now() - t; })() : undefined;
    if (warmMs !== undefined) log(`  qemu: source RAM file read into the page cache first (${warmMs} ms), as our source daemon does`);
    await sleep(IDLE_MS);
    // The source QEMU loaded its state with x-ignore-shared (synthesis); QEMU's migration sends RAM.
    await src.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: false }] });
    // Uncapped, as our handoff's own use of QEMU's migration (migrationTracker.ts): QEMU 7.2's default
    // max-bandwidth (128 MiB/s) would hold its loopback pass to >= 2.6 s for the Debian guest's 354 MB.
    // Its downtime-limit stays QEMU's default: its convergence policy is the one measured.
    await src.execute('migrate-set-parameters', { 'max-bandwidth': 8 << 30 }); // migrationTracker.ts's value
    src.on('event', onSrc);
    const tMigrate = Date.now();
    await src.execute('migrate', { uri: `tcp:127.0.0.1:${target}` });
    let m: any;
    // A migration that does not converge (the guest dirties pages faster than the link carries them at
    // QEMU's downtime-limit) would run forever: bounded, and reported as this trial's failure.
    const giveUp = Date.now() + (throttle ? 900_000 : 300_000);
    for (;;) {
      if (Date.now() > giveUp) throw new Error(`QEMU migration not completed after ${Math.round((Date.now() - tMigrate) / 1000)} s (${m?.status}, ${m?.ram?.transferred} bytes sent): it does not converge`);
      m = await src.execute('query-migrate');
      // Right after `migrate`, query-migrate can still report the incoming migration of the synthesis
      // as completed (no downtime, total 0): only an outgoing one with its figures counts.
      if (m.status === 'completed' && Number(m['total-time']) > 0) break;
      if (m.status === 'failed' || m.status === 'cancelled') throw new Error(`QEMU migration ${m.status}: ${m['error-desc'] ?? ''}\n${logTail(path.join(dir, 'qemu.log'))}`);
      await sleep(20);
    }
    // Through the throttling proxy the source says completed while the proxy and the socket buffers
    // still hold megabytes for the destination: wait until it has loaded everything (up to 10 min;
    // 5 s was too short, and a `cont` then left the counter GET to time out), and count the link
    // total until then.
    const loadDeadline = Date.now() + (throttle ? 600_000 : 5_000);
    while (Date.now() < loadDeadline) { const st = await dst.qmp.execute('query-status'); if (st.status !== 'inmigrate') break; await sleep(10); }
    const loaded = Date.now();
    const st = await dst.qmp.execute('query-status');
    if (st.status === 'inmigrate') throw new Error(`QEMU's destination still loading ${Math.round((loaded - tMigrate) / 1000)} s after migrate\n${logTail(path.join(dir, 'qemu.log'))}`);
    // The destination runs by itself (no -S); its RESUME event may trail query-status by a moment.
    for (const until = Date.now() + 5000; resumeAt === undefined && Date.now() < until;) await sleep(10);
    if (resumeAt === undefined || stopAt === undefined) throw new Error(`QEMU's migration: no ${stopAt === undefined ? 'STOP event at the source' : 'RESUME event at the destination'} (status ${st.status})`);
    const after = await counter(`127.0.0.1:${fwd}`);
    if (after !== before + 1) throw new Error(`counter after QEMU migration is ${after}, expected ${before + 1}`);
    const total = throttle ? Math.max(Number(m['total-time']), loaded - tMigrate) : Number(m['total-time']);
    const out = { bytes: Number(m.ram?.transferred ?? 0), downtime_ms: Math.round(resumeAt - stopAt), reported_downtime_ms: Number(m.downtime), total_ms: total };
    log(`  qemu: ${out.bytes} bytes, downtime (STOP -> RESUME) ${out.downtime_ms} ms (query-migrate's ${out.reported_downtime_ms} ms), total ${out.total_ms} ms`);
    if (proxy) log(`    proxy: ${JSON.stringify(proxy.stats())}`);
    return { ...out, ...(proxy ? { proxy: proxy.stats() } : {}) };
  } finally {
    src.off('event', onSrc);
    dst.qmp.off('event', onDst);
    await proxy?.close();
    await src.execute('quit').catch(() => undefined);
    src.close();
    await stopVm(dst, 2000);
    await th.manager.delete(name).catch(() => undefined);
  }
}

/**
 * Our pause, broken down (phases_ms of the report): QEMU's last pass until its last page arrived
 * (tracking), the rest of its stream (device state), waiting for the source record set to paused
 * (asked alongside the encoding), taking and encoding the last pages, the final disk-layer scan, QEMU's
 * completion and the stream's end, encoding the final round, sending + applying it at the destination
 * (the request that also finishes, less the destination's finish work), and the destination's state
 * load until its QEMU resumed the guest (RESUME stamp; destination_load_connect: connecting to that
 * QEMU, when it was not connected to at begin). With the full compare (fallback) tracking is the paused compare and the device state
 * runs alongside.
 */
function pauseBreakdown(m: Move): Record<string, number | undefined> {
  const p = m.phases_ms ?? {};
  const sendApply = p.final_send_apply_resume === undefined ? undefined
    : p.final_send_apply_resume - (p.destination_qemu_wait ?? 0) - (p.destination_load_device_state_and_cont ?? 0) - (p.destination_server_record ?? 0);
  const tail = {
    encode: p.final_encode, send_apply: sendApply,
    // Until the destination's QEMU resumed the guest (its RESUME stamp; it starts the CPUs by itself), else load + cont.
    destination_load_cont: p.destination_load_to_resume ?? p.destination_load_device_state_and_cont,
    ...(p.destination_load_connect !== undefined ? { destination_load_connect: p.destination_load_connect } : {}),
  };
  return m.tracking === 'qemu-migration'
    ? { tracking: p.pause_final_pages, device_state: p.pause_device_state, record_wait: p.pause_record_wait, take_encode: p.pause_tracking, disk_scan: p.final_disk_scan, stream_end_wait: p.pause_stream_end_wait, ...tail }
    : { tracking: p.final_ram_compare, device_state: (p.final_ram_compare_and_device_state ?? 0) - (p.final_ram_compare ?? 0), disk_scan: p.final_disk_scan, ...tail };
}

/**
 * Our time before the pause (phases_ms of the report): the session check, round 0 read / decoded at
 * the source / sent and applied at the destination, the copy of the base RAM (alongside the decode),
 * then either QEMU's first pass held at the gate (first_round_disk_scan, first_pass_gate_round or
 * _wait, first_pass_gate_reached 1/0) or the compare round, and QEMU's passes (live_tracking);
 * launch_round_digest_copy 1 when the source kept a SHA-256 per page; at_*: points on the timeline
 * (ms since the handoff began): round 0 decoded, QEMU's first pass started / held at the gate, round 0
 * applied at the destination, the gate opened, QEMU stopped the VM.
 */
function liveBreakdown(m: Move): Record<string, number> {
  const p = m.phases_ms ?? {};
  const keys = ['check', 'at_begin_sent', 'launch_round_read', 'launch_round_read_wait', 'at_launch_round_send', 'at_launch_round_sent', 'launch_round_decode', 'live_shadow_load', 'launch_round_send_apply', 'first_round_disk_scan',
    'first_pass_gate_round', 'first_pass_gate_wait', 'first_pass_gate_reached', 'compare_round', 'live_tracking', 'launch_round_digest_copy',
    'late_gate_round', 'late_gate_skipped', 'at_launch_round_decoded', 'at_first_pass_start', 'at_first_pass_gate_held', 'at_launch_round_applied', 'at_first_pass_gate_open',
    'at_late_gate_held', 'at_late_gate_open', 'at_stop'];
  return Object.fromEntries(keys.filter((k) => typeof p[k] === 'number').map((k) => [k, p[k]]));
}

function medianBreakdown(ms: Move[]): Record<string, number> {
  const all = ms.map(pauseBreakdown);
  const out: Record<string, number> = {};
  for (const k of Object.keys(all[0] ?? {})) { const xs = all.map((b) => b[k]).filter((x): x is number => typeof x === 'number'); if (xs.length) out[k] = median(xs); }
  return out;
}

/**
 * The Flask back-end's overlay on the Debian base, made once per base from the launch VM of bench overlay's
 * realistic pair (its workspace: python3-flask + nginx-light and a systemd unit serving "hit N" on port 5000;
 * the launch carries its base ID in launch.json), kept in .cache/bench-handoff/ under the base's ID: a new
 * Debian base (its recipe or the agent changed) makes a new one instead of an overlay no cloudlet can use.
 */
async function flaskOverlay(): Promise<{ file: string; baseHome: string; baseId: string }> {
  const deb = await ensureDebianBase();
  const dir = projectCache('bench-handoff');
  const file = path.join(dir, `flask-${deb.baseId.slice(0, 16)}.overlay`);
  const home = path.join(dir, 'home');
  linkBaseInto(home, deb);
  if (fs.existsSync(file)) return { file, baseHome: home, baseId: deb.baseId };
  const launch = projectCache('bench-overlay', 'realistic', 'launch');
  const launchBase = (() => { try { return (JSON.parse(fs.readFileSync(path.join(launch, 'launch.json'), 'utf8')) as { baseId?: string }).baseId; } catch { return undefined; } })();
  if (launchBase !== deb.baseId || !fs.existsSync(path.join(launch, 'state.bin'))) {
    throw new Error(`no Flask VM snapshot on Debian base ${deb.baseId.slice(0, 12)} in ${launch} (it holds ${launchBase?.slice(0, 12) ?? 'none'}): run \`npm run bench -- overlay --only realistic --prepare\` first (about 10 minutes)`);
  }
  const base = new BaseStore(home).get(deb.baseId);
  log(`debian: making the Flask overlay from ${launch}`);
  const r = await createOverlay(
    { baseId: base.id, ramFile: base.ram, diskFile: base.disk, ramDigests: base.ramDigests, diskDigests: base.diskDigests },
    { ramFile: path.join(launch, 'ram.raw'), diskLayer: path.join(launch, 'disk.qcow2'), deviceState: path.join(launch, 'state.bin'), vmConfig: { ...base.manifest.vm, ports: [80, 5000] } },
    { outFile: `${file}.partial` },
  );
  fs.renameSync(r.path, file);
  return { file, baseHome: home, baseId: deb.baseId };
}

/**
 * The Flask overlay stored with the wire profile (xz units: what `cloudlet overlay publish` pushes),
 * made once from `file` with the project's own recompress and kept beside it.
 */
async function wireOverlay(file: string): Promise<string> {
  const out = file.replace(/\.overlay$/, '-wire.overlay');
  if (fs.existsSync(out)) return out;
  log(`making the wire-profile overlay ${out} (xz 9 units)`);
  const t = Date.now();
  const r = await recompressOverlay(file, `${out}.partial`, { codec: PROFILES.wire });
  fs.renameSync(r.path, out);
  log(`  ${r.sourceBytes} -> ${r.bytes} bytes in ${Date.now() - t} ms`);
  return out;
}

/** One guest: interleaved loopback trials, then the link trials; result keys end in `suffix`. */
async function leg(g: Guest, suffix: string): Promise<Record<string, unknown>> {
  guest = g;
  const debian = g.key === 'debian';
  const overlay = debian ? (await flaskOverlay()).file : await sampleOverlay();
  const th = await tempHome({ base: debian ? 'debian' : 'test' });
  const bases = debian ? { withDebianBase: true } : { withTestBase: true };
  const a = await startDaemon({ ip: '127.0.0.2', ...bases, ...(COMPARE_WORKERS >= 0 ? { env: { CLOUDLET_HANDOFF_COMPARE_WORKERS: String(COMPARE_WORKERS) } } : {}) });
  // A loaded 2-core host can hold the source's event loop (first disk scan, base RAM read) past the default 30 s of silence.
  const b = await startDaemon({ ip: '127.0.0.3', ...bases, env: { CLOUDLET_HANDOFF_SILENCE_MS: '120000' } });
  try {
    const ca = await CloudletClient.login({ authUrl: a.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const overlayUrl = await uploadOverlay(ca, overlay);
    // Interleaved trials: ours, QEMU, ours, QEMU ... each on a fresh VM from the same overlay.
    let n = 0;
    const os: Move[] = [], qs: Move[] = [];
    for (let t = 0; t < TRIALS; t++) {
      log(`${g.key}: loopback, trial ${t + 1}/${TRIALS}:`);
      const tail = (d: TestDaemon) => d.log().split('\n').filter((l) => /handoff|error|warn|Error|at /i.test(l)).slice(-15).join('\n');
      os.push(await ours(a, b, overlayUrl).catch((e) => { throw new Error(`${e.message}\nsource log:\n${tail(a)}\ndestination log:\n${tail(b)}`); }));
      qs.push(await qemu(th, overlay, ++n));
    }
    const o = medianMove(os), q = medianMove(qs);
    const o25s: Move[] = [], q25s: Move[] = [];
    const linkQemuErrors: string[] = [];
    if (LINK_MBIT > 0) {
      const bu = new URL(b.url);
      for (let t = 0; t < LINK_TRIALS; t++) {
        log(`${g.key}: through a ${LINK_MBIT} Mbit/s proxy, trial ${t + 1}/${LINK_TRIALS}:`);
        const proxy = await startThrottleProxy({ host: bu.hostname, port: Number(bu.port) }, LINK_MBIT * 1e6);
        try {
          const m = await ours(a, b, overlayUrl, (u) => u.replace(`${bu.hostname}:${bu.port}`, `127.0.0.1:${proxy.port}`));
          const ps = proxy.stats();
          log(`    proxy: ${JSON.stringify(ps)}`);
          // The busiest connection up is round 0's: when it was on the wire against the handoff's timeline.
          if (ps.up.first_at_ms !== undefined && m.requested_at_ms !== undefined) {
            log(`    round 0's connection on the wire from +${ps.up.first_at_ms - m.requested_at_ms} to +${ps.up.last_at_ms! - m.requested_at_ms} ms after the handoff request (at_launch_round_send ${m.phases_ms?.at_launch_round_send}, at_launch_round_applied ${m.phases_ms?.at_launch_round_applied})`);
          }
          o25s.push({ ...m, proxy: ps });
        } finally { await proxy.close(); }
        if (!QEMU_LINK) continue;
        // QEMU's side of a link trial has failed now and then (its destination's counter GET timing out
        // after the migration through the proxy): the figure is kept as missing, the rest of the run goes on.
        try { q25s.push(await qemu(th, overlay, ++n, true)); } catch (e) {
          linkQemuErrors.push((e as Error).message.split('\n')[0]);
          log(`  qemu through the proxy FAILED: ${linkQemuErrors[linkQemuErrors.length - 1]}`);
        }
      }
    }
    const round3 = (x: number) => Math.round(x * 1000) / 1000;
    const perTrial = (ox: Move[], qx: Move[]) => ox.map((x, i) => ({
      ours_bytes: x.bytes, ours_downtime_ms: x.downtime_ms, ours_source_downtime_ms: x.reported_downtime_ms, ours_total_ms: x.total_ms, ours_rounds: x.rounds, ours_tracking: x.tracking,
      ours_round_pages: x.round_pages, ours_pause_ms: pauseBreakdown(x), ours_live_ms: liveBreakdown(x),
      // The final device state: its bytes, and 1 when it continued the base's saved state (state-after-base).
      ours_device_state_bytes: x.phases_ms?.final_device_state_bytes, ours_state_after_base: x.phases_ms?.final_state_after_base,
      qemu_bytes: qx[i].bytes, qemu_downtime_ms: qx[i].downtime_ms, qemu_reported_downtime_ms: qx[i].reported_downtime_ms, qemu_total_ms: qx[i].total_ms,
      ratio_downtime_vs_qemu: round3(x.downtime_ms / Math.max(1, qx[i].downtime_ms)),
      ...(x.proxy ? { ours_proxy: x.proxy } : {}), ...(qx[i].proxy ? { qemu_proxy: qx[i].proxy } : {}),
    }));
    const k = (name: string) => `${name}${suffix}`;
    const result: Record<string, unknown> = {
      [k('guest')]: g.label, [k('trials')]: TRIALS,
      [k('ours_bytes')]: o.bytes, [k('ours_downtime_ms')]: o.downtime_ms, [k('ours_source_downtime_ms')]: o.reported_downtime_ms, [k('ours_total_ms')]: o.total_ms, [k('ours_rounds')]: o.rounds,
      [k('ours_tracking')]: os.map((x) => x.tracking).join(','), [k('ours_pause_ms')]: medianBreakdown(os),
      [k('qemu_bytes')]: q.bytes, [k('qemu_downtime_ms')]: q.downtime_ms, [k('qemu_reported_downtime_ms')]: q.reported_downtime_ms, [k('qemu_total_ms')]: q.total_ms,
      [k('ratio_bytes_vs_qemu')]: round3(o.bytes / q.bytes), [k('ratio_downtime_vs_qemu')]: round3(o.downtime_ms / Math.max(1, q.downtime_ms)),
      [k('ratio_total_vs_qemu')]: round3(o.total_ms / q.total_ms),
      [k('trials_detail')]: perTrial(os, qs),
    };
    if (linkQemuErrors.length) result[k('link_qemu_errors')] = linkQemuErrors;
    if (!QEMU_LINK) result[k('link_qemu_skipped')] = '--no-qemu-link: no QEMU link trial, no link ratio';
    if (o25s.length) {
      const o25 = medianMove(o25s);
      Object.assign(result, {
        [k('link_ours_bytes')]: o25.bytes, [k('link_ours_downtime_ms')]: o25.downtime_ms, [k('link_ours_source_downtime_ms')]: o25.reported_downtime_ms, [k('link_ours_total_ms')]: o25.total_ms,
        // Each link trial's timeline (ms since the handoff began) and per-round pages, with or without QEMU's side.
        [k('link_ours_live_ms')]: o25s.map((x) => liveBreakdown(x)), [k('link_ours_round_pages')]: o25s.map((x) => x.round_pages),
      });
    }
    // Ratios only over trials where both sides finished.
    if (o25s.length && q25s.length === o25s.length) {
      const o25 = medianMove(o25s), q25 = medianMove(q25s);
      Object.assign(result, {
        [k('link_qemu_bytes')]: q25.bytes, [k('link_qemu_downtime_ms')]: q25.downtime_ms, [k('link_qemu_reported_downtime_ms')]: q25.reported_downtime_ms, [k('link_qemu_total_ms')]: q25.total_ms,
        [k('ratio_link_total_vs_qemu')]: round3(o25.total_ms / q25.total_ms), [k('ratio_link_downtime_vs_qemu')]: round3(o25.downtime_ms / Math.max(1, q25.downtime_ms)),
        [k('link_trials_detail')]: perTrial(o25s, q25s),
      });
    }
    if (WIRE && debian) Object.assign(result, await wireScenario(a, b, th, overlay, q25s, () => ++n, perTrial, `${suffix}_wire`));
    log(`${g.key}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await a.stop();
    await b.stop();
    await th.cleanup();
  }
}

/**
 * The scenario a user gets: the overlay published with the wire profile (`cloudlet overlay publish`'s
 * default: xz units) to a real registry (docker-registry on loopback), the VM synthesized by the source
 * daemon from its oci:// reference (the daemon keeps the pulled file as the launch overlay), handed
 * off on loopback and through the link; QEMU's migration of the VM synthesized from the same wire file
 * in the same run on loopback (interleaved), and on the link the QEMU link trials of the build-profile
 * scenario above (the same VM content: same overlay ID; a QEMU link trial is 2 min). Same daemons.
 * Keys end in `suffix` (`_debian_wire`): the existing keys stay the build-profile scenario's.
 */
async function wireScenario(a: TestDaemon, b: TestDaemon, th: TempHome, overlay: string, q25s: Move[], next: () => number,
  perTrial: (ox: Move[], qx: Move[]) => unknown[], suffix: string): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  const wire = await wireOverlay(overlay);
  const reg = await startRegistry();
  try {
    const pub = await publishOverlay(wire, `${reg.host}/bench/flask:wire`, { profile: 'wire', credentials: null, storeRoot: path.join(th.home, 'publish') });
    const url = `oci://${reg.host}/bench/flask:wire`;
    log(`${guest.key} wire: published ${pub.segmentBytes} bytes of units as ${url}`);
    const os: Move[] = [], qs: Move[] = [];
    for (let t = 0; t < WIRE_TRIALS; t++) {
      log(`${guest.key} wire: loopback, trial ${t + 1}/${WIRE_TRIALS}:`);
      os.push(await ours(a, b, url));
      qs.push(await qemu(th, wire, next()));
    }
    const o25s: Move[] = [];
    if (LINK_MBIT > 0) {
      const bu = new URL(b.url);
      for (let t = 0; t < LINK_TRIALS; t++) {
        log(`${guest.key} wire: through a ${LINK_MBIT} Mbit/s proxy, trial ${t + 1}/${LINK_TRIALS}:`);
        const proxy = await startThrottleProxy({ host: bu.hostname, port: Number(bu.port) }, LINK_MBIT * 1e6);
        try {
          o25s.push(await ours(a, b, url, (u) => u.replace(`${bu.hostname}:${bu.port}`, `127.0.0.1:${proxy.port}`)));
        } finally { await proxy.close(); }
      }
    }
    const round3 = (x: number) => Math.round(x * 1000) / 1000;
    const o = medianMove(os), q = medianMove(qs);
    const k = (name: string) => `${name}${suffix}`;
    const round0 = (m: Move) => ({ xz_units: m.phases_ms?.launch_round_xz_units, round0_bytes: m.round_bytes?.[0] });
    const out: Record<string, unknown> = {
      [k('overlay')]: `${path.basename(wire)} (${fs.statSync(wire).size} bytes, xz units) published to a local docker-registry, synthesized from oci://`,
      [k('trials')]: WIRE_TRIALS,
      [k('ours_bytes')]: o.bytes, [k('ours_downtime_ms')]: o.downtime_ms, [k('ours_total_ms')]: o.total_ms, [k('ours_rounds')]: o.rounds,
      [k('ours_round0')]: os.map(round0),
      [k('qemu_bytes')]: q.bytes, [k('qemu_downtime_ms')]: q.downtime_ms, [k('qemu_total_ms')]: q.total_ms,
      [k('ratio_bytes_vs_qemu')]: round3(o.bytes / q.bytes), [k('ratio_downtime_vs_qemu')]: round3(o.downtime_ms / Math.max(1, q.downtime_ms)),
      [k('ratio_total_vs_qemu')]: round3(o.total_ms / q.total_ms),
      [k('trials_detail')]: perTrial(os, qs),
    };
    if (os.some((m) => m.round0 !== 'launch-overlay')) out[k('round0_compare_reasons')] = os.map((m) => m.round0_reason ?? m.round0);
    if (o25s.length) {
      const o25 = medianMove(o25s);
      Object.assign(out, { [k('link_ours_bytes')]: o25.bytes, [k('link_ours_downtime_ms')]: o25.downtime_ms, [k('link_ours_total_ms')]: o25.total_ms, [k('link_ours_round0')]: o25s.map(round0) });
      if (q25s.length) {
        const q25 = medianMove(q25s);
        Object.assign(out, {
          [k('link_qemu_total_ms')]: q25.total_ms, [k('link_qemu_bytes')]: q25.bytes, [k('link_qemu_from')]: 'the build-profile scenario\'s QEMU link trials of this run (same VM content)',
          [k('ratio_link_total_vs_qemu')]: round3(o25.total_ms / q25.total_ms), [k('ratio_link_bytes_vs_qemu')]: round3(o25.bytes / q25.bytes),
        });
      }
    }
    out[k('scenario_ms')] = Date.now() - t0;
    return out;
  } finally {
    await reg.close();
  }
}

async function main(): Promise<void> {
  const t0 = Date.now();
  log(`handoff bench (${GUESTS.join(', ')}): two daemons, a QEMU pair, ${TRIALS} interleaved trials each`);
  const result: Record<string, unknown> = {
    bench: 'handoff', downtime: 'source QEMU STOP event -> destination QEMU RESUME event, both sides', idle_ms: IDLE_MS, trials: TRIALS, aggregate: 'median', link_mbit: LINK_MBIT, link_trials: LINK_TRIALS,
    compare_workers: COMPARE_WORKERS >= 0 ? COMPARE_WORKERS : 'default', tracker: process.env.CLOUDLET_HANDOFF_TRACKER ?? 'migration',
    target_ratio_bytes: 0.25, target_ratio_downtime: 1.0, target_ratio_bytes_debian: 0.05, target_ratio_total_debian: 1.0, target_ratio_link_total_debian: 0.1,
  };
  if (GUESTS.includes('test')) Object.assign(result, await leg(TEST_GUEST, ''));
  if (GUESTS.includes('debian')) Object.assign(result, await leg(DEBIAN_GUEST, '_debian'));
  result.bench_ms = Date.now() - t0;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e) => { process.stderr.write(`${e?.stack ?? e}\n`); process.exit(1); });
