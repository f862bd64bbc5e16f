/**
 * `npm run bench -- overlay [--only test|realistic] [--level N] [--reuse-peer] [--prepare] [--elijah-level 9] [--synth-trials N] [--synth-only] [--no-boot] [--synth-ab]`
 *
 * For the test guest and the Debian 12 base (sandbox/guest/debian.ts, the shared cached base: systemd, 1 GiB RAM,
 * 4 GiB disk, python3-flask + nginx-light installed from .debs by `cloudlet build`), on the same
 * base/launch pair:
 *   ours     createOverlay (4 KiB dedup across base RAM, base disk and the overlay itself; zstd 3),
 *            and its wire profile (re-compressed as xz units: what `overlay publish` sends)
 *   discards the launch VM is built with discards off, snapshotted (launch-raw), then given the disk
 *            and the memory discard, each measured (overlay bytes before/after), and snapshotted
 *            again (launch = the default build)
 *   dedupXz  4 KiB sha256 dedup against zero, base RAM, base disk and earlier chunks, xz -9 of the
 *            unique bytes (bench/lib/dedupXz.ts), on the default pair
 *   elijah   the Elijah pipeline: xdelta3 of RAM and of disk against the base with the settings of
 *            Elijah's code (--elijah-level 9: -9, source window covering the file), then xz -9, on
 *            launch-raw (the unoptimised pair: no discards)
 *   synth    synthesis by a cloudlet daemon asked over its API (the overlay in its image service) to the
 *            back-end's first HTTP response; --synth-trials N (default 3), median
 *   boot     cold boot of the launch disk to the same response (realistic guest), one after each synthesis trial
 * The slow set-up is cached under .cache/bench-overlay/ (bases, launch pairs), so an interrupted run
 * resumes; the Elijah peer is measured again in every run (--reuse-peer takes the last figures). Last line: one JSON object with every figure and the ratios.
 */
import { execFileSync, spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { projectCache } from '../sandbox/common/paths';
import { BaseStore } from '../sandbox/base/store';
import { parseBuildFile, loadBuildFile } from '../sandbox/build/buildFile';
import { runBuild } from '../sandbox/build/build';
import { createOverlay } from '../sandbox/overlay';
import { createSandboxOverlay } from '../sandbox/overlay/sandboxOverlay';
import { CloudletClient } from '../sandbox/client';
import { dedupXz } from './lib/dedupXz';
import { zeroFreeMemoryCommand } from '../sandbox/overlay/discard';
import { PROFILES, recompressOverlay } from '../sandbox/overlay/recompress';
import { chooseAccel } from '../sandbox/qemu/accel';
import { qemuBinary } from '../sandbox/qemu/host';
import { freePort } from '../sandbox/qemu/ports';
import { SandboxManager, type VmConfig } from '../sandbox/sandboxes/sandboxManager';
import { startVm, stopVm, vmFilesIn } from '../sandbox/qemu/vm';
import { fetchDebs } from '../sandbox/guest/debian';
import { DEBIAN_BASE_NAME, ensureDebianBase, ensureTestBase, linkBaseInto } from '../test/integration/fixtures/testBase';
import { startDaemon, TEST_USERS } from '../test/integration/fixtures/daemon';
import { uploadOverlay } from '../test/integration/fixtures/sampleOverlay';

const say = (s: string) => process.stderr.write(`[bench overlay] ${s}\n`);
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const level = args.includes('--level') ? Number(args[args.indexOf('--level') + 1]) : 3;
// The peer is measured in every run; --reuse-peer takes the last run's Elijah figures (quick reruns).
const reusePeer = args.includes('--reuse-peer');
// --prepare builds (or checks) the cached launch pairs and stops: the slow set-up, run ahead of the measured run.
const prepareOnly = args.includes('--prepare');
// --synth-only: only the synthesis and cold boot trials, on the overlay the last full run left in .cache/bench-overlay/LABEL/overlays.
const synthOnly = args.includes('--synth-only');
// --no-boot: no cold boots (a quick loop on the synthesis alone; no ratio then).
const noBoot = args.includes('--no-boot');
// --synth-ab: also the trials on a daemon with CLOUDLET_SYNTHESIS_OVERLAP=1 (QEMU started while the overlay is applied), no boots.
const synthAb = args.includes('--synth-ab');
// --elijah-level 9: xdelta3 -9 with a source window covering the file (the issue's first runs); default:
// the settings of Elijah's own code (xdelta3 default level and window).
const elijahLevel9 = args.includes('--elijah-level') && args[args.indexOf('--elijah-level') + 1] === '9';
const root = projectCache('bench-overlay');
// Synthesis trials (each with a cold boot on the realistic pair); the figures are medians.
const synthTrials = args.includes('--synth-trials') ? Math.max(1, Number(args[args.indexOf('--synth-trials') + 1])) : 3;
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

type LaunchFiles = { ramFile: string; diskLayer: string; deviceState: string; vmConfig: VmConfig & { ports: number[] } };

interface Pair {
  label: string;
  home: string;
  baseId: string;
  /** The default build's launch VM (both discards). */
  launch: LaunchFiles;
  /** The same guest before any discard (the unoptimised pair the Elijah peer gets). */
  raw: LaunchFiles;
  discard: DiscardSteps;
  httpPort: number;   // guest port of the back-end's HTTP answer
  httpPath: string;
}

function httpOk(port: number, p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout: 3000 }, (res) => { res.resume(); resolve(res.statusCode === 200); });
    req.on('timeout', () => { req.destroy(); resolve(false); });
    req.on('error', () => resolve(false));
  });
}

async function untilHttp(port: number, p: string, timeoutMs: number, tries?: { n: number }): Promise<number> {
  const t0 = Date.now();
  while (!(await httpOk(port, p))) {
    if (tries) tries.n++;
    if (Date.now() - t0 > timeoutMs) throw new Error(`no HTTP 200 on 127.0.0.1:${port}${p} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

interface DiscardSteps {
  /** Overlay bytes (level 3) of the build's sandbox before any discard, after the disk discard, after both. */
  none_bytes: number; disk_bytes: number; both_bytes: number;
  memory_zeroed_bytes?: number; disk_freed_bytes?: number; skipped: string[]; discard_ms: number;
}

/**
 * Builds the launch VM with `cloudlet build` once and keeps its files (paused-sandbox snapshot).
 * The build runs with discards off; its sandbox is then snapshotted as it is (launch-raw: the
 * Elijah peer's input, the unoptimised pair), given the disk discard (overlay measured), then the
 * memory discard, and snapshotted again (launch: what the default build makes, same order as
 * createSandboxOverlay). So each discard's effect is measured on one and the same guest.
 */
async function launchPair(label: string, home: string, baseId: string, workspaceFile: string, httpPort: number, httpPath: string): Promise<Pair> {
  const dir = path.join(root, label, 'launch');
  const rawDir = path.join(root, label, 'launch-raw');
  const meta = path.join(dir, 'launch.json');
  // The recipe is part of the pair: a changed cloudlet.yaml (or memory discard command) rebuilds the launch VM.
  const recipe = createHash('sha256').update(fs.readFileSync(workspaceFile)).update(zeroFreeMemoryCommand()).digest('hex');
  const stale = fs.existsSync(meta) && ((m) => m.baseId !== baseId || m.recipe !== recipe)(JSON.parse(fs.readFileSync(meta, 'utf8')) as { baseId: string; recipe?: string });
  const old = fs.existsSync(meta) && !(JSON.parse(fs.readFileSync(meta, 'utf8')) as { discard?: unknown }).discard;
  if (!fs.existsSync(meta) || stale || old) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(rawDir, { recursive: true, force: true });
    const manager = new SandboxManager({ root: home });
    say(`${label}: building the launch VM with cloudlet build (${workspaceFile}), discards off`);
    const spec = { ...loadBuildFile(workspaceFile), discard: { memory: false, disk: false } };
    const t0 = Date.now();
    const r = await runBuild(manager, spec, { base: baseId, progress: (e) => { if (e.message) say(`${label}: ${e.phase}: ${e.message}`); }, log: (l) => say(`${label}:   | ${l.split('\n').slice(-3).join(' / ')}`) });
    say(`${label}: launch VM built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const sb = r.sandbox.dir;
    const keep = (into: string) => {
      const stage = `${into}.partial`;
      fs.rmSync(stage, { recursive: true, force: true });
      fs.mkdirSync(stage, { recursive: true });
      for (const f of ['ram.raw', 'disk.qcow2', 'state.bin']) execFileSync('cp', ['--sparse=always', path.join(sb, f), path.join(stage, f)]);
      return stage;
    };
    const rawStage = keep(rawDir);
    const scratch = path.join(root, label, 'steps');
    fs.rmSync(scratch, { recursive: true, force: true });
    await manager.unpause(r.sandbox.id);
    const disk = await createSandboxOverlay(manager, r.sandbox.id, { outFile: path.join(scratch, 'disk.overlay'), level: 3, discard: { memory: false, disk: true } });
    await manager.unpause(r.sandbox.id);
    const both = await createSandboxOverlay(manager, r.sandbox.id, { outFile: path.join(scratch, 'both.overlay'), level: 3, discard: { memory: true, disk: false } });
    fs.rmSync(scratch, { recursive: true, force: true });
    const steps: DiscardSteps = {
      none_bytes: r.overlay.bytes, disk_bytes: disk.bytes, both_bytes: both.bytes,
      memory_zeroed_bytes: both.discard?.memoryZeroedBytes, disk_freed_bytes: disk.discard?.diskFreedBytes,
      skipped: [...(disk.discard?.skipped ?? []), ...(both.discard?.skipped ?? [])], discard_ms: (disk.discard?.ms ?? 0) + (both.discard?.ms ?? 0),
    };
    say(`${label}: discards: ${JSON.stringify(steps)}`);
    const stage = keep(dir);
    const vmConfig = { ...(r.overlay.manifest.vmConfig as VmConfig & { ports: number[] }) };
    fs.writeFileSync(path.join(stage, 'launch.json'), JSON.stringify({ baseId, recipe, vmConfig, discard: steps }, null, 2));
    fs.writeFileSync(path.join(rawStage, 'launch.json'), JSON.stringify({ baseId, vmConfig }, null, 2));
    await manager.delete(r.sandbox.id);
    manager.close();
    fs.renameSync(rawStage, rawDir);
    fs.renameSync(stage, dir);
  }
  const m = JSON.parse(fs.readFileSync(meta, 'utf8')) as { baseId: string; vmConfig: VmConfig & { ports: number[] }; discard: DiscardSteps };
  const files = (d: string) => ({ ramFile: path.join(d, 'ram.raw'), diskLayer: path.join(d, 'disk.qcow2'), deviceState: path.join(d, 'state.bin'), vmConfig: m.vmConfig });
  return { label, home, baseId: m.baseId, httpPort, httpPath, launch: files(dir), raw: files(rawDir), discard: m.discard };
}

async function testPair(): Promise<Pair> {
  const tb = await ensureTestBase();
  const home = path.join(root, 'test', 'home');
  linkBaseInto(home, tb);
  return launchPair('test', home, tb.baseId, path.join(__dirname, '..', 'test/fixtures/sample-backend/cloudlet.yaml'), 80, '/cgi-bin/counter');
}

const FLASK_APP = `from flask import Flask
import os
app = Flask(__name__)
hits = 0

@app.route('/')
def index():
    global hits
    hits += 1
    return f'hello from flask on a cloudlet: hit {hits}, pid {os.getpid()}\\n'

if __name__ == '__main__':
    app.run(host='0.0.0.0', port=5000)
`;
const FLASK_UNIT = `[Unit]
Description=bench flask app
After=network.target

[Service]
ExecStart=/usr/bin/python3 /srv/app/app.py
Restart=always

[Install]
WantedBy=multi-user.target
`;
const REALISTIC_YAML = `base: ${DEBIAN_BASE_NAME}
name: flask-app
copy:
  - from: debs/
    to: /root/debs
  - from: app/
    to: /srv/app
install:
  - DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /root/debs/*.deb
  - rm -rf /root/debs && apt-get clean
  - cp /srv/app/flask-app.service /etc/systemd/system/ && systemctl daemon-reload && systemctl enable flask-app
start: systemctl start flask-app
ports: [80, 5000]
ready:
  http: { port: 5000, path: / }
  timeout: 600
`;

async function realisticPair(): Promise<Pair & { kernel: string; initrd: string }> {
  // The Debian 12 base every test and benchmark shares (sandbox/guest/debian.ts, cached in .cache).
  const deb = await ensureDebianBase();
  const home = path.join(root, 'realistic', 'home');
  const store = new BaseStore(home);
  for (const b of store.list()) if (b.id !== deb.baseId) store.delete(b.id, { force: true }); // an older base
  linkBaseInto(home, deb);
  const base = store.get(deb.baseId);
  const debsDir = await fetchDebs(deb.guest, ['python3-flask', 'nginx-light'], { onProgress: (e) => { if (e.message) say(`realistic: ${e.message}`); } });
  const ws = path.join(root, 'realistic', 'workspace');
  if (!fs.existsSync(path.join(ws, 'cloudlet.yaml')) || fs.readFileSync(path.join(ws, 'cloudlet.yaml'), 'utf8') !== REALISTIC_YAML) {
    fs.rmSync(path.join(ws, 'debs'), { recursive: true, force: true });
    fs.mkdirSync(path.join(ws, 'debs'), { recursive: true });
    fs.mkdirSync(path.join(ws, 'app'), { recursive: true });
    for (const f of fs.readdirSync(debsDir)) fs.copyFileSync(path.join(debsDir, f), path.join(ws, 'debs', f));
    fs.writeFileSync(path.join(ws, 'app', 'app.py'), FLASK_APP);
    fs.writeFileSync(path.join(ws, 'app', 'flask-app.service'), FLASK_UNIT);
    parseBuildFile(REALISTIC_YAML, path.join(ws, 'cloudlet.yaml'));
    fs.writeFileSync(path.join(ws, 'cloudlet.yaml'), REALISTIC_YAML);
  }
  const p = await launchPair('realistic', home, base.id, path.join(ws, 'cloudlet.yaml'), 5000, '/');
  return { ...p, kernel: base.kernel!, initrd: base.initrd! };
}

/** Runs a command to completion; a progress line every minute (xdelta3 and xz print nothing for minutes). */
function timed(what: string, cmd: string, a: string[], outFile?: string): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, a, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-500); });
    const tick = setInterval(() => {
      const out = outFile && fs.existsSync(outFile) ? `, ${(fs.statSync(outFile).size / 1e6).toFixed(1)} MB written` : '';
      say(`  ${what}: still running after ${((Date.now() - t0) / 1000).toFixed(0)} s${out} (load ${os.loadavg()[0].toFixed(1)})`);
    }, 60_000);
    child.on('error', (e) => { clearInterval(tick); reject(e); });
    child.on('close', (code) => {
      clearInterval(tick);
      if (code === 0) resolve(Date.now() - t0);
      else reject(new Error(`${cmd} ${a.join(' ')}: exit ${code}: ${err}`));
    });
  });
}

/**
 * The Elijah pipeline on the unoptimised pair (no discards), by default with the settings of Elijah's
 * own code (elijah-cloudlet tool.py `diff_files`: `xdelta3 -f -s base modified out`, default level and
 * source window, then LZMA preset 9). `--elijah-level 9`: xdelta3 -9 with a source window covering the
 * file, as the issue's first runs (smaller delta; its RAM step took 49 s on a quiet machine, but got
 * ~12% of a core at load 19 and had not finished after 28 min). Cached per pair and setting for --reuse-peer.
 */
async function elijah(p: Pair, base: { ram: string; disk: string }): Promise<Record<string, number>> {
  const dir = path.join(root, p.label, elijahLevel9 ? 'elijah-9' : 'elijah');
  const cached = path.join(dir, 'result.json');
  // The cached figures count only for the same input: base and the launch-raw files (size, mtime).
  const input = [p.baseId, ...[p.raw.ramFile, p.raw.diskLayer, p.raw.deviceState].map((f) => { const st = fs.statSync(f); return `${st.size}@${Math.round(st.mtimeMs)}`; })].join(' ');
  if (reusePeer && fs.existsSync(cached)) {
    const { input: was, ...c } = JSON.parse(fs.readFileSync(cached, 'utf8')) as { input?: string } & Record<string, number>;
    if (was === input) { say(`${p.label}: Elijah pipeline (cached result, same input)`); return c; }
    say(`${p.label}: --reuse-peer: the cached Elijah result is for another input (${was ?? 'not recorded'}); measuring again`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const xdeltaOpts = (source: string) => (elijahLevel9 ? ['-9', '-B', String(Math.min(2 ** 31, Math.max(1 << 20, fs.statSync(source).size)))] : []);
  say(`${p.label}: Elijah pipeline: flatten the launch disk, xdelta3 ${elijahLevel9 ? '-9 (window = file)' : 'with the settings of Elijah\'s code'} of RAM and disk against the base, xz -9`);
  const launchDisk = path.join(dir, 'launch-disk.raw');
  const flattenMs = await timed('qemu-img convert', 'qemu-img', ['convert', '-O', 'raw', p.raw.diskLayer, launchDisk]);
  const ramDelta = path.join(dir, 'ram.vcdiff'), diskDelta = path.join(dir, 'disk.vcdiff');
  const xdeltaRamMs = await timed('xdelta3 RAM', 'xdelta3', [...xdeltaOpts(base.ram), '-f', '-e', '-s', base.ram, p.raw.ramFile, ramDelta], ramDelta);
  say(`${p.label}: xdelta3 RAM ${(xdeltaRamMs / 1000).toFixed(0)} s (${(fs.statSync(ramDelta).size / 1e6).toFixed(1)} MB)`);
  const xdeltaDiskMs = await timed('xdelta3 disk', 'xdelta3', [...xdeltaOpts(base.disk), '-f', '-e', '-s', base.disk, launchDisk, diskDelta], diskDelta);
  say(`${p.label}: xdelta3 disk ${(xdeltaDiskMs / 1000).toFixed(0)} s (${(fs.statSync(diskDelta).size / 1e6).toFixed(1)} MB)`);
  fs.rmSync(launchDisk, { force: true });
  fs.copyFileSync(p.raw.deviceState, path.join(dir, 'state.bin'));
  let xzMs = 0;
  for (const f of ['ram.vcdiff', 'disk.vcdiff', 'state.bin']) xzMs += await timed(`xz -9 ${f}`, 'xz', ['-9', '-k', '-f', '-T1', path.join(dir, f)], path.join(dir, `${f}.xz`));
  const bytes = ['ram.vcdiff.xz', 'disk.vcdiff.xz', 'state.bin.xz'].reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  const r = {
    bytes, ms: xdeltaRamMs + xdeltaDiskMs + xzMs, xdeltaRamMs, xdeltaDiskMs, xzMs, flattenMs,
    ramDeltaBytes: fs.statSync(ramDelta).size, diskDeltaBytes: fs.statSync(diskDelta).size,
  };
  for (const f of ['ram.vcdiff', 'disk.vcdiff', 'state.bin']) fs.rmSync(path.join(dir, f), { force: true });
  fs.writeFileSync(cached, JSON.stringify({ ...r, input }, null, 2));
  return r;
}

/**
 * Synthesis as a user gets it: a cloudlet daemon (`cloudlet serve`, its own process, started before
 * any timer as a running cloudlet is) asked over its API to synthesize the overlay, the path of
 * `cloudlet synthesize --cloudlet` and of the editor: POST /servers with metadata.overlay_url naming
 * the overlay in the daemon's image service (uploaded untimed: the overlay is at the cloudlet, as
 * after an upload or a publish). Timed from that request to the back-end's first HTTP answer; the
 * job's progress events (daemon clock, same host) split it. Not in the bench's own process: that has
 * just run the peers (big heaps, GC) and built its files 1.5-2x slower than a fresh process.
 *
 * The daemon serves the bench home itself (no new hard link to the shared base). Any other home
 * linking or removing the base's files changes their ctime, and the launch's quick base check
 * (sandbox/base/verify.ts) then re-hashes 5 GiB inside the synthesis (138.9 s of a 158.7 s synthesis
 * at load 19 on 2026-12-07). A real cloudlet's base is checked once; here the check runs first,
 * untimed, and a trial during which the base was re-stamped is measured again once.
 */
interface SynthTrial {
  ms: number; fetch_ms: number; apply_ms: number; launch_ms: number; first_http_ms: number;
  /** first_http_ms in two: the job's end reaching the client after `running`, then the HTTP probe (its own connection, retried every 50 ms). */
  job_end_ms: number; probe_ms: number; probe_failures: number; probe_qemu_cpu_ms?: number; probe_daemon_cpu_ms?: number; daemon_cpu_ms?: number;
}

/** CPU time (user + system, all threads; not its children) a process has used, in ms, or undefined when unreadable. */
function processCpuMs(pid: number | undefined): number | undefined {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) * 1000 / 100; // clock ticks (USER_HZ 100)
  } catch { return undefined; }
}

/** The QEMU pid of a sandbox of `home` (its record), or undefined. */
function vmPid(home: string, vmId: string | undefined): number | undefined {
  try { return vmId ? (JSON.parse(fs.readFileSync(path.join(home, 'sandboxes', vmId, 'state.json'), 'utf8')) as { pid?: number }).pid : undefined; } catch { return undefined; }
}

async function daemonSynthesis(c: CloudletClient, overlayUrl: string, p: Pair, n: number, daemonPid?: number): Promise<SynthTrial> {
  const bases = new BaseStore(p.home);
  const stamp = path.join(bases.get(p.baseId).dir, '.verified.json');
  for (let attempt = 1; ; attempt++) {
    const tv = Date.now();
    await bases.verifyQuick(p.baseId);
    say(`${p.label}: base check before synthesis (untimed) ${((Date.now() - tv) / 1000).toFixed(1)} s`);
    const before = fs.readFileSync(stamp, 'utf8');
    const first: Record<string, number> = {};
    const cpu0 = processCpuMs(daemonPid);
    const t0 = Date.now();
    const { id, jobId } = await c.createServer({ name: `bench-synth-${n}-${attempt}`, overlayUrl });
    const end = await c.watchJob(jobId!, (e) => { first[e.phase] ??= e.at ?? Date.now(); });
    const cpu1 = processCpuMs(daemonPid);
    if (end.status !== 'DONE') throw new Error(`synthesis job ${jobId}: ${end.status} ${end.error ?? ''}`);
    const hostPort = (end.result as { ports: Record<string, string> }).ports[String(p.httpPort)];
    const tEnd = Date.now();
    const failed = { n: 0 };
    // CPU during the probe: the VM's QEMU (TCG translating the request's path afresh in a new process) and the daemon's.
    const qemuPid = vmPid(p.home, (end.result as { vm_id?: string }).vm_id);
    const probeCpu0 = [processCpuMs(qemuPid), processCpuMs(daemonPid)];
    await untilHttp(Number(hostPort.split(':')[1]), p.httpPath, 300_000, failed);
    const ms = Date.now() - t0;
    const probeCpu = [processCpuMs(qemuPid), processCpuMs(daemonPid)].map((v, i) => (v !== undefined && probeCpu0[i] !== undefined ? Math.round(v - probeCpu0[i]!) : undefined));
    await c.deleteServer(id);
    // Phases by the daemon's progress events: download (request, manifest, fetch) -> synthesize (verify + apply) -> launch (device state into the VM, cont) -> running.
    const at = (k: string, dflt: number) => first[k] ?? dflt;
    const tApply = at('synthesize', t0), tLaunch = at('launch', at('prepare', tApply)), tRun = at('running', tEnd);
    // The daemon's own CPU from the request to the job's end (apply, its threads; not QEMU nor other children):
    // a figure the load of other jobs changes far less than the times.
    const daemonCpu = cpu0 !== undefined && cpu1 !== undefined ? Math.round(cpu1 - cpu0) : undefined;
    const trial = { ms, fetch_ms: tApply - t0, apply_ms: tLaunch - tApply, launch_ms: tRun - tLaunch, first_http_ms: t0 + ms - tRun, job_end_ms: tEnd - tRun, probe_ms: t0 + ms - tEnd, probe_failures: failed.n, probe_qemu_cpu_ms: probeCpu[0], probe_daemon_cpu_ms: probeCpu[1], daemon_cpu_ms: daemonCpu };
    say(`${p.label}: synthesis ${(ms / 1000).toFixed(2)} s (${JSON.stringify(trial)}; load ${os.loadavg()[0].toFixed(1)})`);
    if (fs.readFileSync(stamp, 'utf8') === before || attempt === 2) return trial;
    say(`${p.label}: the base was re-hashed during synthesis (another home linked its files): measuring again`);
  }
}

async function coldBoot(p: Pair & { kernel: string; initrd: string }, baseVm: VmConfig): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cb-'));
  try {
    const disk = path.join(dir, 'disk.qcow2');
    execFileSync('cp', ['--sparse=always', p.launch.diskLayer, disk]);
    const ram = path.join(dir, 'ram.raw');
    fs.writeFileSync(ram, '');
    fs.truncateSync(ram, baseVm.ramBytes);
    const host = await freePort();
    const binary = qemuBinary();
    const { accel } = await chooseAccel(binary, baseVm.cpuModel);
    const t0 = Date.now();
    const vm = await startVm({ binary, name: `bench-coldboot-${process.pid}`, cfg: baseVm, files: vmFilesIn(dir, { path: disk, format: 'qcow2' }, ram, { kernel: p.kernel, initrd: p.initrd }), accel, ports: [{ guest: p.httpPort, host }] });
    try {
      await untilHttp(host, p.httpPath, 900_000);
      return Date.now() - t0;
    } finally {
      await stopVm(vm);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The synthesis trials on a daemon of the bench home, each followed by a cold boot (withBoot): interleaved, so both see the same load; medians. */
async function synthesisTrials(p: Pair, overlayFile: string, baseVm: VmConfig, withBoot?: { kernel: string; initrd: string }): Promise<{ synthMs: number; bootMs?: number; fields: Record<string, unknown> }> {
  const main = await daemonTrials(p, overlayFile, baseVm, withBoot);
  // --synth-ab: the same trials on a daemon that synthesizes into a prepared launch (QEMU started while the overlay is applied).
  const overlap = synthAb ? await daemonTrials(p, overlayFile, baseVm, undefined, { CLOUDLET_SYNTHESIS_OVERLAP: '1' }) : undefined;
  return {
    ...main,
    fields: {
      ...main.fields,
      ...(overlap ? { synthesis_overlap_ms: overlap.synthMs, synthesis_overlap_trials_ms: overlap.fields.synthesis_trials_ms, synthesis_overlap_apply_ms: overlap.fields.synthesis_apply_ms, synthesis_overlap_launch_ms: overlap.fields.synthesis_launch_ms, synthesis_overlap_daemon_cpu_ms: overlap.fields.synthesis_daemon_cpu_ms } : {}),
    },
  };
}

async function daemonTrials(p: Pair, overlayFile: string, baseVm: VmConfig, withBoot?: { kernel: string; initrd: string }, env?: Record<string, string>): Promise<{ synthMs: number; bootMs?: number; fields: Record<string, unknown> }> {
  const synths: SynthTrial[] = [], boots: number[] = [];
  // The daemon names VMs srv-UUID: QEMU's sockets under the bench home's long path would pass the
  // unix socket limit, so the daemon reaches the home through a short symlink.
  const short = fs.mkdtempSync('/tmp/cb-');
  fs.symlinkSync(path.resolve(p.home), path.join(short, 'h'));
  const d = await startDaemon({ ip: '127.0.0.5', data: path.join(short, 'h'), keepData: true, env });
  if (env) say(`${p.label}: daemon with ${JSON.stringify(env)}`);
  try {
    const c = await CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const overlayUrl = await uploadOverlay(c, overlayFile, `bench-${p.label}`);
    try {
      for (let t = 1; t <= synthTrials; t++) {
        say(`${p.label}: trial ${t}/${synthTrials}: synthesis on the cloudlet daemon to the first HTTP answer`);
        synths.push(await daemonSynthesis(c, overlayUrl, p, t, d.proc?.pid));
        if (withBoot && !noBoot) {
          say(`${p.label}: trial ${t}/${synthTrials}: cold boot of the launch disk to the first HTTP answer`);
          boots.push(await coldBoot({ ...p, ...withBoot }, baseVm));
          say(`${p.label}: cold boot ${(boots[boots.length - 1] / 1000).toFixed(1)} s (load ${os.loadavg()[0].toFixed(1)})`);
        }
      }
    } finally {
      await c.deleteImage(overlayUrl.split('/').slice(-2)[0]).catch(() => {});
    }
  } finally {
    await d.stop();
    fs.rmSync(short, { recursive: true, force: true });
  }
  const synthMs = median(synths.map((x) => x.ms));
  const bootMs = boots.length ? median(boots) : undefined;
  const synthPart = (k: keyof SynthTrial) => median(synths.map((x) => x[k] ?? NaN));
  say(`${p.label}: synthesis median ${(synthMs / 1000).toFixed(2)} s of ${JSON.stringify(synths.map((x) => x.ms))}${bootMs ? `, cold boot median ${(bootMs / 1000).toFixed(1)} s of ${JSON.stringify(boots)}` : ''}`);
  return {
    synthMs, bootMs,
    fields: {
      synthesis_method: 'cloudlet daemon (own process, started before the timer): POST /servers with overlay_url in its image service -> back-end\'s first HTTP 200; median of trials',
      synthesis_ms: synthMs, synthesis_trials_ms: synths.map((x) => x.ms),
      synthesis_fetch_ms: synthPart('fetch_ms'), synthesis_apply_ms: synthPart('apply_ms'), synthesis_launch_ms: synthPart('launch_ms'), synthesis_first_http_ms: synthPart('first_http_ms'),
      synthesis_job_end_ms: synthPart('job_end_ms'), synthesis_probe_ms: synthPart('probe_ms'), synthesis_probe_qemu_cpu_ms: synthPart('probe_qemu_cpu_ms'),
      synthesis_daemon_cpu_ms: synthPart('daemon_cpu_ms'),
      cold_boot_ms: bootMs, cold_boot_trials_ms: boots,
      synthesis_load_average: os.loadavg().map((x) => Number(x.toFixed(2))),
      ratio_synthesis_vs_boot: bootMs ? synthMs / bootMs : undefined,
    },
  };
}

async function measure(p: Pair, withBoot?: { kernel: string; initrd: string }): Promise<Record<string, unknown>> {
  const manager = new SandboxManager({ root: p.home });
  const base = manager.bases.get(p.baseId);
  const outDir = path.join(root, p.label, 'overlays');
  fs.rmSync(outDir, { recursive: true, force: true });
  // Both pipelines start from a warm page cache: read the launch files and base RAM once first
  // (the peer, measured after ours, would otherwise get the cache ours warmed).
  for (const f of [p.launch.ramFile, p.launch.diskLayer, base.ram, base.ramDigests, base.diskDigests]) execFileSync('cat', [f], { stdio: ['ignore', 'ignore', 'inherit'] });
  const baseImages = { baseId: base.id, ramFile: base.ram, diskFile: base.disk, ramDigests: base.ramDigests, diskDigests: base.diskDigests };
  const noDiscard = await createOverlay(baseImages, p.raw, { outDir: path.join(outDir, 'raw'), level });
  say(`${p.label}: ours without discards ${(noDiscard.bytes / 1e6).toFixed(2)} MB; discards at build: ${JSON.stringify(p.discard)}`);
  say(`${p.label}: our overlay (zstd level ${level}, ${os.availableParallelism()} threads)`);
  const ours = await createOverlay(baseImages, p.launch, { outDir, level });
  const bd = ours.manifest.breakdown;
  const ramBy = bd.ram.encodings;
  say(`${p.label}: ours ${(ours.bytes / 1e6).toFixed(2)} MB in ${(ours.timings.totalMs / 1000).toFixed(2)} s (scan ${(ours.timings.scanMs / 1000).toFixed(2)} s); RAM ${bd.ram.chunks} changed: ${JSON.stringify(ramBy)}, from overlay disk ${bd.ram.selfFrom.disk}; disk ${bd.disk.chunks} changed: ${JSON.stringify(bd.disk.encodings)}`);
  // The wire profile (what `overlay publish` sends): the same overlay re-compressed as xz units.
  const wire = await recompressOverlay(ours.path, path.join(outDir, 'wire', 'wire.overlay'), { codec: PROFILES.wire });
  say(`${p.label}: wire profile ${(wire.bytes / 1e6).toFixed(2)} MB (re-compressed in ${(wire.ms / 1000).toFixed(1)} s, same ID: ${wire.overlayId === ours.overlayId})`);
  say(`${p.label}: dedup + xz -9 peer on the same pair`);
  const dx = dedupXz({ ramDigests: base.ramDigests, diskDigests: base.diskDigests, disk: base.disk }, p.launch, path.join(root, p.label, 'dedup-xz'));
  say(`${p.label}: dedup + xz -9 ${(dx.bytes / 1e6).toFixed(2)} MB in ${(dx.ms / 1000).toFixed(0)} s (unique ${(dx.uniqueBytes / 1e6).toFixed(1)} MB; ${JSON.stringify(dx.counts)})`);
  const e = await elijah(p, { ram: base.ram, disk: base.disk });
  say(`${p.label}: Elijah ${(e.bytes / 1e6).toFixed(2)} MB in ${(e.ms / 1000).toFixed(0)} s`);

  // The publish benchmark reuses the realistic overlay when it finds it here.
  const shared = projectCache('bench', 'overlay');
  fs.mkdirSync(shared, { recursive: true });
  fs.copyFileSync(ours.path, path.join(shared, `${p.label}-v1.overlay`));

  manager.close();
  const st = await synthesisTrials(p, ours.path, base.manifest.vm, withBoot);
  return {
    ram_bytes: base.manifest.vm.ramBytes, disk_bytes: fs.statSync(base.disk).size,
    ours_bytes: ours.bytes, ours_ms: ours.timings.totalMs, ours_scan_ms: ours.timings.scanMs, ours_level: level,
    ours_ram_changed: bd.ram.chunks, ours_disk_changed: bd.disk.chunks,
    ours_ram_encodings: ramBy, ours_disk_encodings: bd.disk.encodings, ours_ram_from_overlay_disk: bd.ram.selfFrom.disk,
    ours_device_state_bytes: bd.deviceStateBytes,
    ours_no_discard_bytes: noDiscard.bytes,
    discard_steps_bytes: { none: p.discard.none_bytes, disk: p.discard.disk_bytes, both: p.discard.both_bytes },
    discard_disk_removed_bytes: p.discard.none_bytes - p.discard.disk_bytes,
    discard_memory_removed_bytes: p.discard.disk_bytes - p.discard.both_bytes,
    discard_memory_zeroed_bytes: p.discard.memory_zeroed_bytes, discard_disk_freed_bytes: p.discard.disk_freed_bytes, discard_skipped: p.discard.skipped,
    dedup_xz_bytes: dx.bytes, dedup_xz_ms: dx.ms, dedup_xz_unique_bytes: dx.uniqueBytes, dedup_xz_counts: dx.counts,
    elijah_xdelta: elijahLevel9 ? '-9, window = file' : 'Elijah code (default level and window)',
    elijah_bytes: e.bytes, elijah_ms: e.ms, elijah_xdelta_ram_ms: e.xdeltaRamMs, elijah_xdelta_disk_ms: e.xdeltaDiskMs, elijah_xz_ms: e.xzMs, elijah_flatten_ms: e.flattenMs,
    ...st.fields,
    ratio_size_vs_elijah: ours.bytes / e.bytes, ratio_speed_vs_elijah: e.ms / ours.timings.totalMs,
    ratio_size_vs_dedup_xz: ours.bytes / dx.bytes,
    ours_wire_bytes: wire.bytes, ours_wire_ms: wire.ms,
    // Where the bytes go, per kind (compressed segment bytes; the rest is the device state and the manifest).
    ours_ram_bytes: bd.ram.compressedBytes, ours_disk_bytes: bd.disk.compressedBytes,
    ours_wire_ram_bytes: wire.manifest.breakdown.ram.compressedBytes, ours_wire_disk_bytes: wire.manifest.breakdown.disk.compressedBytes,
    ratio_publish_size_vs_elijah: wire.bytes / e.bytes, ratio_publish_size_vs_dedup_xz: wire.bytes / dx.bytes,
  };
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = { bench: 'overlay', host_cpus: os.availableParallelism(), level };
  if (prepareOnly) {
    if (!only || only === 'test') await testPair();
    if (!only || only === 'realistic') await realisticPair();
    say('launch pairs ready');
    return;
  }
  if (synthOnly) {
    // The synthesis and cold boot trials alone, on the overlay the last full run made of the cached pair.
    const pairs: Array<[string, () => Promise<Pair & { kernel?: string; initrd?: string }>]> = [['test', testPair], ['realistic', realisticPair]];
    for (const [label, make] of pairs.filter(([l]) => !only || only === l)) {
      const p = await make();
      const dir = path.join(root, label, 'overlays');
      const file = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => f.endsWith('.overlay')) : undefined;
      if (!file) throw new Error(`--synth-only: no overlay in ${dir}; run the bench without it first`);
      const base = new BaseStore(p.home).get(p.baseId);
      const st = await synthesisTrials(p, path.join(dir, file), base.manifest.vm, p.kernel ? { kernel: p.kernel, initrd: p.initrd! } : undefined);
      out[label] = { overlay: file, ...st.fields };
      if (label === 'realistic') out.ratio_synthesis_vs_boot = st.fields.ratio_synthesis_vs_boot;
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  if (!only || only === 'test') out.test = await measure(await testPair());
  if (!only || only === 'realistic') {
    const p = await realisticPair();
    const r = await measure(p, { kernel: p.kernel, initrd: p.initrd });
    out.realistic = r;
    out.ratio_size_vs_elijah = r.ratio_size_vs_elijah;
    out.ratio_speed_vs_elijah = r.ratio_speed_vs_elijah;
    out.ratio_size_vs_dedup_xz = r.ratio_size_vs_dedup_xz;
    out.ratio_publish_size_vs_elijah = r.ratio_publish_size_vs_elijah;
    out.ratio_publish_size_vs_dedup_xz = r.ratio_publish_size_vs_dedup_xz;
    out.discard_memory_removed_bytes = r.discard_memory_removed_bytes;
    out.discard_disk_removed_bytes = r.discard_disk_removed_bytes;
    out.ratio_synthesis_vs_boot = r.ratio_synthesis_vs_boot;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(() => process.exit(0), (e) => { process.stderr.write(`bench overlay failed: ${(e as Error).stack ?? e}\n`); process.exit(1); });
