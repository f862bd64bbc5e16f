/**
 * `npm run bench -- handoff [--trials 3] [--link-mbit 25] [--link-trials 1] [--idle-ms 3000] [--compare-workers N]`: the sample back-end (synthesized
 * from the test base's overlay, its in-RAM counter advanced) moved while running
 *   (a) by our handoff between two daemons on loopback (127.0.0.2 -> 127.0.0.3), and
 *   (b) by QEMU's own live migration to a second QEMU on loopback (-incoming, tcp:127.0.0.1),
 * in the same run, from the same overlay state after the same idle time. Then both again through a
 * throttling TCP proxy (default 25 Mbit/s) for total time on an edge-like link (0 to skip).
 * Each leg runs `--trials` times, interleaved (ours, QEMU, ours, QEMU ...), every trial on a fresh VM
 * synthesized from the same overlay, so that both sides see the same varying load (the machine is
 * shared); the figures reported are each side's MEDIAN over its trials, and the ratios are ratios of
 * those medians. Per-trial figures are kept in `trials_detail` / `link_trials_detail`.
 * Prints bytes sent, downtime and total time for each; last line one JSON object with every figure,
 * ratio_bytes_vs_qemu (target <= 0.25) and ratio_downtime_vs_qemu (<= 1.0).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletClient, type HandoffReport, type Server } from '../sandbox/client';
import { chooseAccel } from '../sandbox/qemu/accel';
import { qemuBinary } from '../sandbox/qemu/host';
import { freePort } from '../sandbox/qemu/ports';
import { QmpClient } from '../sandbox/qemu/qmp';
import { logTail, startVm, stopVm, vmFilesIn } from '../sandbox/qemu/vm';
import { synthesize } from '../sandbox/overlay/sandboxOverlay';
import { startDaemon, TEST_USERS, type TestDaemon } from '../test/integration/fixtures/daemon';
import { counter, sampleOverlay, uploadOverlay } from '../test/integration/fixtures/sampleOverlay';
import { tempHome, type TempHome } from '../test/integration/fixtures/testBase';
import { startThrottleProxy } from './lib/throttleProxy';

const arg = (name: string, dflt: number) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
const LINK_MBIT = arg('--link-mbit', 25);
const IDLE_MS = arg('--idle-ms', 3000);
const TRIALS = Math.max(1, Math.floor(arg('--trials', 3)));
const LINK_TRIALS = Math.max(1, Math.floor(arg('--link-trials', 1)));
/** Compare workers at the source daemon (CLOUDLET_HANDOFF_COMPARE_WORKERS); -1 = the daemon's default. */
const COMPARE_WORKERS = arg('--compare-workers', -1);
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const port80 = (s: Server) => (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)['80'];

interface Move { bytes: number; downtime_ms: number; total_ms: number; rounds?: number; phases_ms?: Record<string, number> }

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const medianMove = (ms: Move[]): Move => ({
  bytes: median(ms.map((m) => m.bytes)), downtime_ms: median(ms.map((m) => m.downtime_ms)), total_ms: median(ms.map((m) => m.total_ms)),
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
  const url = via ? via(cb.endpoint('compute')) : cb.endpoint('compute');
  const h = await ca.handoff(id, { handoffUrl: url, destToken: cb.token, destVmName: 'bench-moved' });
  const end = await ca.watchJob(h.jobId);
  if (end.status !== 'DONE') throw new Error(`handoff: ${end.error}`);
  const r = end.result as HandoffReport;
  const moved = await cb.getServer(r.destination_server_id);
  const after = await counter(port80(moved));
  if (after !== before + 1) throw new Error(`counter at the destination is ${after}, expected ${before + 1}`);
  await cb.deleteServer(moved.id);
  log(`  ours: ${r.bytes_sent} bytes in ${r.rounds} rounds, downtime ${r.downtime_ms} ms, total ${r.total_ms} ms (${JSON.stringify(r.phases_ms)})`);
  return { bytes: r.bytes_sent, downtime_ms: r.downtime_ms, total_ms: r.total_ms, rounds: r.rounds, phases_ms: r.phases_ms };
}

/** QEMU's migration of the same launch VM (synthesized here) to a second QEMU sharing its disk. */
async function qemu(th: TempHome, overlay: string, n: number, throttle = false): Promise<Move> {
  const name = `qm-src-${n}`;
  const r = await synthesize(th.manager, th.baseId, overlay, { name });
  const before = await counter(`127.0.0.1:${r.sandbox.ports.find((p) => p.guest === 80)!.host}`);
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
  const dst = await startVm({ binary, name: `cloudlet-bench-qm-dst-${n}`, cfg: layout.vmConfig, files, accel, incoming: true, paused: true, ports: [{ guest: 80, host: fwd }] });
  let proxy: { close(): Promise<void> } | undefined;
  try {
    const inPort = await freePort();
    await dst.qmp.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${inPort}` });
    let target = inPort;
    if (throttle) { const p = await startThrottleProxy({ host: '127.0.0.1', port: inPort }, LINK_MBIT * 1e6); proxy = p; target = p.port; }
    await sleep(IDLE_MS);
    // The source QEMU loaded its state with x-ignore-shared (synthesis); QEMU's migration sends RAM.
    await src.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: false }] });
    await src.execute('migrate', { uri: `tcp:127.0.0.1:${target}` });
    let m: any;
    for (;;) {
      m = await src.execute('query-migrate');
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') throw new Error(`QEMU migration ${m.status}: ${m['error-desc'] ?? ''}\n${logTail(path.join(dir, 'qemu.log'))}`);
      await sleep(20);
    }
    for (let i = 0; i < 500; i++) { const st = await dst.qmp.execute('query-status'); if (st.status !== 'inmigrate') break; await sleep(10); }
    const st = await dst.qmp.execute('query-status');
    if (!st.running) await dst.qmp.execute('cont');
    const after = await counter(`127.0.0.1:${fwd}`);
    if (after !== before + 1) throw new Error(`counter after QEMU migration is ${after}, expected ${before + 1}`);
    const out = { bytes: Number(m.ram?.transferred ?? 0), downtime_ms: Number(m.downtime), total_ms: Number(m['total-time']) };
    log(`  qemu: ${out.bytes} bytes, downtime ${out.downtime_ms} ms, total ${out.total_ms} ms`);
    return out;
  } finally {
    await proxy?.close();
    await src.execute('quit').catch(() => undefined);
    src.close();
    await stopVm(dst, 2000);
    await th.manager.delete(name).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const t0 = Date.now();
  log('handoff bench: sample back-end overlay, two daemons, a QEMU pair');
  const overlay = await sampleOverlay();
  const th = await tempHome();
  const a = await startDaemon({ ip: '127.0.0.2', withTestBase: true, ...(COMPARE_WORKERS >= 0 ? { env: { CLOUDLET_HANDOFF_COMPARE_WORKERS: String(COMPARE_WORKERS) } } : {}) });
  const b = await startDaemon({ ip: '127.0.0.3', withTestBase: true });
  try {
    const ca = await CloudletClient.login({ authUrl: a.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const overlayUrl = await uploadOverlay(ca, overlay);
    // Interleaved trials: ours, QEMU, ours, QEMU ... each on a fresh VM from the same overlay.
    let n = 0;
    const os: Move[] = [], qs: Move[] = [];
    for (let t = 0; t < TRIALS; t++) {
      log(`loopback, trial ${t + 1}/${TRIALS}:`);
      os.push(await ours(a, b, overlayUrl));
      qs.push(await qemu(th, overlay, ++n));
    }
    const o = medianMove(os), q = medianMove(qs);
    const o25s: Move[] = [], q25s: Move[] = [];
    if (LINK_MBIT > 0) {
      const bu = new URL(b.url);
      for (let t = 0; t < LINK_TRIALS; t++) {
        log(`through a ${LINK_MBIT} Mbit/s proxy, trial ${t + 1}/${LINK_TRIALS}:`);
        const proxy = await startThrottleProxy({ host: bu.hostname, port: Number(bu.port) }, LINK_MBIT * 1e6);
        try {
          o25s.push(await ours(a, b, overlayUrl, (u) => u.replace(`${bu.hostname}:${bu.port}`, `127.0.0.1:${proxy.port}`)));
        } finally { await proxy.close(); }
        q25s.push(await qemu(th, overlay, ++n, true));
      }
    }
    const round3 = (x: number) => Math.round(x * 1000) / 1000;
    const perTrial = (ox: Move[], qx: Move[]) => ox.map((x, i) => ({
      ours_bytes: x.bytes, ours_downtime_ms: x.downtime_ms, ours_total_ms: x.total_ms, ours_rounds: x.rounds,
      ours_paused_ram_ms: x.phases_ms?.final_ram_compare, ours_compare_workers: x.phases_ms?.final_ram_compare_workers,
      qemu_bytes: qx[i].bytes, qemu_downtime_ms: qx[i].downtime_ms, qemu_total_ms: qx[i].total_ms,
      ratio_downtime_vs_qemu: round3(x.downtime_ms / Math.max(1, qx[i].downtime_ms)),
    }));
    const result: Record<string, unknown> = {
      bench: 'handoff', guest: 'test-guest 128 MiB + sample back-end', idle_ms: IDLE_MS, trials: TRIALS, aggregate: 'median',
      compare_workers: COMPARE_WORKERS >= 0 ? COMPARE_WORKERS : 'default',
      ours_bytes: o.bytes, ours_downtime_ms: o.downtime_ms, ours_total_ms: o.total_ms, ours_rounds: o.rounds,
      qemu_bytes: q.bytes, qemu_downtime_ms: q.downtime_ms, qemu_total_ms: q.total_ms,
      ratio_bytes_vs_qemu: round3(o.bytes / q.bytes), ratio_downtime_vs_qemu: round3(o.downtime_ms / Math.max(1, q.downtime_ms)),
      ratio_total_vs_qemu: round3(o.total_ms / q.total_ms),
      target_ratio_bytes: 0.25, target_ratio_downtime: 1.0,
      trials_detail: perTrial(os, qs),
    };
    if (o25s.length) {
      const o25 = medianMove(o25s), q25 = medianMove(q25s);
      Object.assign(result, {
        link_mbit: LINK_MBIT, link_trials: LINK_TRIALS, link_ours_bytes: o25.bytes, link_ours_downtime_ms: o25.downtime_ms, link_ours_total_ms: o25.total_ms,
        link_qemu_bytes: q25.bytes, link_qemu_downtime_ms: q25.downtime_ms, link_qemu_total_ms: q25.total_ms,
        ratio_link_total_vs_qemu: round3(o25.total_ms / q25.total_ms), ratio_link_downtime_vs_qemu: round3(o25.downtime_ms / Math.max(1, q25.downtime_ms)),
        link_trials_detail: perTrial(o25s, q25s),
      });
    }
    result.bench_ms = Date.now() - t0;
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await a.stop();
    await b.stop();
    await th.cleanup();
  }
}

main().catch((e) => { process.stderr.write(`${e?.stack ?? e}\n`); process.exit(1); });
