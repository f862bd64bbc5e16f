/**
 * Sandbox VMs of one store root: resume a base (qcow2 over the base disk + private RAM copy +
 * incoming device state), launch from given files (VM synthesis), exec/copy through the guest
 * agent, pause/unpause, snapshot, stop, delete, and adopt QEMU processes left by a process that
 * died. Each sandbox lives in sandboxes/<id>/ with a state.json (see sandboxRecord.ts).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { createLogger, type Logger } from '../common/log';
import { storePaths, type StorePaths } from '../common/paths';
import { noProgress, type ProgressSink } from '../common/progress';
import { BaseStore, type BaseBundle } from '../base/store';
import { hashFile } from '../base/digests';
import { chooseAccel } from './accel';
import { AgentClient, type ExecResult } from './agentClient';
import { cloneFile } from './files';
import { checkHostCanRun, hostQemu, qemuBinary, qemuImgBinary } from './host';
import { checkDeviceStateHeader, incomingTimeoutMs, listenForDeviceState, loadDeviceState, saveDeviceStateToFile } from './deviceState';
import { checkPortFree, freePort } from './ports';
import { killProcess, processState } from './process';
import { QmpClient } from './qmp';
import { run } from './run';
import { readRecord, writeRecord, type SandboxRecord, type SandboxStatus } from './sandboxRecord';
import { logTail, startVm, stopVm, vmFilesIn } from './vm';
import type { PortForward, VmConfig, VmFiles } from './vmconfig';

export type { SandboxStatus } from './sandboxRecord';
export type { PortForward, VmConfig } from './vmconfig';
export type { ExecResult } from './agentClient';

export interface SandboxInfo {
  id: string;
  name: string;                  // same as id
  baseId: string;
  status: SandboxStatus;
  pid?: number;
  dir: string;
  ports: PortForward[];          // guest port -> 127.0.0.1:host
  consoleSocket: string;         // serial console (ttyS0) for humans / the editor terminal
  agentSocket: string;
  qmpSocket: string;
  accel: 'kvm' | 'tcg';
  accelReason: string;
  createdAt: string;
  resumedAt?: string;
  resumeMs?: number;             // QEMU start -> guest running
  error?: string;
}

/** Port request: a guest port (host port picked free) or an explicit pair. */
export type PortRequest = number | { guest: number; host?: number };

export interface ResumeOptions {
  name?: string;
  ports?: PortRequest[];         // in addition to the base's declared ports
  onProgress?: ProgressSink;
}

/** The generic start used by VM synthesis: files prepared by the caller, ownership passes to the sandbox. */
export interface LaunchSpec {
  baseId: string;
  diskLayer: string;             // qcow2 whose backing file is the base's disk.raw (moved into the sandbox)
  ramFile: string;               // raw page-aligned guest RAM (moved into the sandbox)
  deviceState: string;           // QEMU device state saved with x-ignore-shared (read, not moved)
  vmConfig: VmConfig;
  ports?: PortRequest[];
  name?: string;
  onProgress?: ProgressSink;
}

/** A sandbox claimed for a launch whose files are still being written (prepareLaunch). */
export interface PreparedLaunch { id: string; dir: string; ramFile: string; diskLayer: string; ports: PortForward[] }

export interface SnapshotResult {
  baseId: string;
  ramFile: string;               // the sandbox's RAM file: consistent while the VM stays paused
  diskLayer: string;             // the sandbox's qcow2 layer (flushed)
  deviceState: string;           // device state just saved (x-ignore-shared)
  deviceStateBytes: number;
  deviceStateSha256: string;
  vmConfig: VmConfig;
}

export interface AdoptReport {
  id: string;
  pid?: number;
  action: 'adopted' | 'attached' | 'ended' | 'gone' | 'cleaned' | 'none';
  message: string;
}

interface Live { qmp?: QmpClient; agent?: AgentClient }

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export class SandboxManager {
  readonly paths: StorePaths;
  readonly bases: BaseStore;
  private readonly log: Logger;
  private readonly live = new Map<string, Live>();
  /** Deadline of each phase of loading a device state (default: incomingTimeoutMs(), 120 s). */
  readonly incomingTimeoutMs: number;

  constructor(opts: { root?: string; log?: Logger; incomingTimeoutMs?: number } = {}) {
    this.paths = storePaths(opts.root);
    this.incomingTimeoutMs = opts.incomingTimeoutMs ?? incomingTimeoutMs();
    this.bases = new BaseStore(this.paths.root);
    this.log = opts.log ?? createLogger('sandbox');
  }

  // ---------------------------------------------------------------- queries

  list(): SandboxInfo[] {
    if (!fs.existsSync(this.paths.sandboxes)) return [];
    const out: SandboxInfo[] = [];
    for (const id of fs.readdirSync(this.paths.sandboxes).sort()) {
      const r = readRecord(this.dirOf(id));
      if (r) out.push(this.info(this.refresh(r)));
    }
    return out;
  }

  get(ref: string): SandboxInfo { return this.info(this.refresh(this.record(ref))); }

  /** Base IDs in use by sandboxes of this store (for `base delete`). */
  usersOfBase(baseId: string): string[] { return this.list().filter((s) => s.baseId === baseId).map((s) => s.id); }

  // ---------------------------------------------------------------- start

  /** Resumes a base in a new sandbox (or a stopped sandbox of that base given by name). */
  async resume(baseRef: string, opts: ResumeOptions = {}): Promise<SandboxInfo> {
    const progress = opts.onProgress ?? noProgress;
    const binary = qemuBinary();
    const imgBinary = qemuImgBinary();
    const base = await this.bases.verifyQuick(baseRef);
    checkDeviceStateHeader(base.state);
    const { host, accel } = await this.checkHost(binary, base.manifest.vm, `base ${base.id.slice(0, 12)}`);
    const existing = opts.name ? this.existingFor(opts.name, base.id) : undefined;
    if (existing) return this.restart(existing, binary, accel, progress);
    const { id, dir } = this.claim(opts.name);
    try {
      progress({ phase: 'prepare', message: 'qcow2 layer and private RAM copy' });
      const disk = path.join(dir, 'disk.qcow2');
      // Independent steps, run together: the disk layer, the RAM copy, the loopback ports.
      const [, , ports] = await Promise.all([
        run(imgBinary, ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${base.disk},backing_fmt=raw`, disk]),
        cloneFile(base.ram, path.join(dir, 'ram.raw')),
        this.resolvePorts([...base.manifest.ports, ...(opts.ports ?? [])]),
      ]);
      return await this.boot({ id, dir, base, vmConfig: base.manifest.vm, deviceState: base.state, ports, binary, accel: accel.accel, accelReason: accel.reason, qemuVersion: host.version, progress });
    } catch (e) {
      await this.discard(id, dir);
      throw e;
    }
  }

  /** Starts a sandbox from files the caller prepared (VM synthesis, handoff destination). */
  async launch(spec: LaunchSpec): Promise<SandboxInfo> {
    const progress = spec.onProgress ?? noProgress;
    const binary = qemuBinary();
    const base = await this.bases.verifyQuick(spec.baseId);
    for (const [what, f] of [['disk layer', spec.diskLayer], ['RAM file', spec.ramFile], ['device state', spec.deviceState]] as const) {
      if (!fs.existsSync(f)) throw new CloudletError('BadInput', `${what} ${f} does not exist`);
    }
    checkDeviceStateHeader(spec.deviceState);
    if (fs.statSync(spec.ramFile).size !== spec.vmConfig.ramBytes) {
      throw new CloudletError('Corrupt', `RAM file ${spec.ramFile} is ${fs.statSync(spec.ramFile).size} bytes, the VM config says ${spec.vmConfig.ramBytes}`);
    }
    const { host, accel } = await this.checkHost(binary, spec.vmConfig, `launch of base ${base.id.slice(0, 12)}`);
    const { id, dir } = this.claim(spec.name);
    try {
      moveInto(spec.diskLayer, path.join(dir, 'disk.qcow2'));
      moveInto(spec.ramFile, path.join(dir, 'ram.raw'));
      const ports = await this.resolvePorts([...base.manifest.ports, ...(spec.ports ?? [])]);
      return await this.boot({ id, dir, base, vmConfig: spec.vmConfig, deviceState: spec.deviceState, ports, binary, accel: accel.accel, accelReason: accel.reason, qemuVersion: host.version, progress });
    } catch (e) {
      await this.discard(id, dir);
      throw e;
    }
  }

  // ------------------------------------------------ prepared launch (handoff destination)

  /**
   * A launch whose RAM and disk are still being written (the handoff destination, additive to
   * launch()): claims the sandbox, clones the base RAM into it, creates an empty qcow2 layer over the
   * base disk and picks the ports; the sandbox stays 'starting'. startPrepared() then starts QEMU
   * paused with -incoming defer on those files: the caller goes on writing the RAM file (QEMU maps it
   * shared) and may rewrite the qcow2 in place (QEMU keeps an incoming image inactive and re-reads
   * it when the device state load activates it) until completePrepared(), which loads the device
   * state and continues. delete() discards a prepared sandbox at any point.
   */
  async prepareLaunch(spec: { baseId: string; vmConfig: VmConfig; ports?: PortRequest[]; name?: string }): Promise<PreparedLaunch> {
    const binary = qemuBinary();
    const base = await this.bases.verifyQuick(spec.baseId);
    const { accel } = await this.checkHost(binary, spec.vmConfig, `launch of base ${base.id.slice(0, 12)}`);
    const kernel = spec.vmConfig.kernel ? { kernel: base.kernel!, initrd: base.initrd! } : undefined;
    if (spec.vmConfig.kernel && (!kernel?.kernel || !kernel.initrd)) throw new CloudletError('Corrupt', `base ${base.id.slice(0, 12)} lacks the kernel/initrd its VM config boots from`);
    const { id, dir } = this.claim(spec.name);
    try {
      const files = this.filesOf(dir, kernel);
      const [, , ports] = await Promise.all([
        run(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${path.resolve(base.disk)},backing_fmt=raw`, files.disk]),
        cloneFile(base.ram, files.ramFile),
        this.resolvePorts([...base.manifest.ports, ...(spec.ports ?? [])]),
      ]);
      writeRecord(dir, {
        id, baseId: base.id, createdAt: new Date().toISOString(), status: 'starting', vmConfig: spec.vmConfig,
        accel: accel.accel, accelReason: accel.reason, ports, managerPid: process.pid, kernel,
      });
      return { id, dir, ramFile: files.ramFile, diskLayer: files.disk, ports };
    } catch (e) {
      await this.discard(id, dir);
      throw e;
    }
  }

  /**
   * Starts the QEMU of a prepared launch: paused, -incoming defer, agent attached, and already
   * listening for the device state (x-ignore-shared, migration events on, migrate-incoming on a
   * unix socket), so completePrepared() only has to stream it in.
   */
  async startPrepared(id: string): Promise<void> {
    const dir = this.dirOf(id);
    const rec = readRecord(dir);
    if (!rec || rec.status !== 'starting' || rec.pid) throw new CloudletError('Conflict', `sandbox '${id}' is not a prepared launch`);
    const files = this.filesOf(dir, rec.kernel);
    const vm = await startVm({ binary: qemuBinary(), dir, name: `cloudlet-sandbox-${id}`, cfg: rec.vmConfig, files, accel: rec.accel, incoming: true, paused: true, ports: rec.ports });
    rec.pid = vm.pid;
    rec.cmdline = vm.cmdline;
    writeRecord(dir, rec);
    const agent = new AgentClient(files.agentSocket);
    this.live.set(id, { qmp: vm.qmp, agent });
    await agent.attach();
    await listenForDeviceState(vm.qmp, path.join(dir, 'migrate.sock'));
  }

  /** Streams the device state (x-ignore-shared) into a started prepared launch and continues the VM. */
  async completePrepared(id: string, deviceState: Buffer, timeoutMs = this.incomingTimeoutMs): Promise<SandboxInfo> {
    const dir = this.dirOf(id);
    const rec = readRecord(dir);
    const qmp = this.live.get(id)?.qmp;
    if (!rec || rec.status !== 'starting' || !rec.pid || !qmp) throw new CloudletError('Conflict', `sandbox '${id}' is not a started prepared launch`);
    const t0 = Date.now();
    try {
      await loadDeviceState(qmp, deviceState, { socket: path.join(dir, 'migrate.sock'), timeoutMs, listening: true });
      await qmp.execute('cont');
    } catch (e) {
      const tail = logTail(path.join(dir, 'qemu.log'));
      throw e instanceof CloudletError && tail ? new CloudletError(e.code, `${e.message}\n${tail}`, { hint: e.hint }) : e;
    }
    rec.status = 'running';
    rec.resumedAt = new Date().toISOString();
    rec.resumeMs = Date.now() - t0;
    writeRecord(dir, rec);
    return this.info(rec);
  }

  /** The QMP connection of a live sandbox (handoff: stop and device-state save without a file). */
  async qmpClient(ref: string): Promise<QmpClient> { return this.qmpOf(this.requireLive(ref)); }

  private async checkHost(binary: string, cfg: VmConfig, what: string) {
    const host = await hostQemu(binary);
    const accel = await chooseAccel(binary, cfg.cpuModel);
    checkHostCanRun(host, cfg, accel.accel, what);
    return { host, accel };
  }

  /** QEMU with -incoming defer, agent attached, device state loaded, then cont. */
  private async boot(o: {
    id: string; dir: string; base: BaseBundle; vmConfig: VmConfig; deviceState: string; ports: PortForward[];
    binary: string; accel: 'kvm' | 'tcg'; accelReason: string; qemuVersion: string; progress: ProgressSink; createdAt?: string;
  }): Promise<SandboxInfo> {
    const kernel = o.vmConfig.kernel ? { kernel: o.base.kernel!, initrd: o.base.initrd! } : undefined;
    if (o.vmConfig.kernel && (!kernel?.kernel || !kernel.initrd)) throw new CloudletError('Corrupt', `base ${o.base.id.slice(0, 12)} lacks the kernel/initrd its VM config boots from`);
    const files = this.filesOf(o.dir, kernel);
    const rec: SandboxRecord = {
      id: o.id, baseId: o.base.id, createdAt: o.createdAt ?? new Date().toISOString(), status: 'starting',
      vmConfig: o.vmConfig, accel: o.accel, accelReason: o.accelReason, ports: o.ports, managerPid: process.pid, kernel,
    };
    writeRecord(o.dir, rec);
    o.progress({ phase: 'resume', message: `starting QEMU (${o.accel})` });
    const t0 = Date.now();
    const vm = await startVm({ binary: o.binary, dir: o.dir, name: `cloudlet-sandbox-${o.id}`, cfg: o.vmConfig, files, accel: o.accel, incoming: true, paused: true, ports: o.ports });
    rec.pid = vm.pid;
    rec.cmdline = vm.cmdline;
    writeRecord(o.dir, rec);
    await failpoint('resume-after-qemu-start', vm.pid);
    const agent = new AgentClient(files.agentSocket);
    this.live.set(o.id, { qmp: vm.qmp, agent });
    try {
      await agent.attach();
      try {
        await loadDeviceState(vm.qmp, o.deviceState, { socket: path.join(o.dir, 'migrate.sock'), timeoutMs: this.incomingTimeoutMs });
      } catch (e) {
        // QEMU exits when an incoming state does not load: wait for its last words in the log.
        if (e instanceof CloudletError && e.code === 'Corrupt') await Promise.race([vm.exited.catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
        throw e;
      }
      await vm.qmp.execute('cont');
    } catch (e) {
      const tail = logTail(path.join(o.dir, 'qemu.log'));
      throw e instanceof CloudletError && tail ? new CloudletError(e.code, `${e.message}\n${tail}`, { hint: e.hint }) : e;
    }
    rec.status = 'running';
    rec.resumedAt = new Date().toISOString();
    rec.resumeMs = Date.now() - t0;
    writeRecord(o.dir, rec);
    o.progress({ phase: 'running', message: `${o.id} running after ${rec.resumeMs} ms` });
    return this.info(rec);
  }

  /** A stopped sandbox given by name restarts from its own saved state; a live one is refused. */
  private existingFor(name: string, baseId: string): SandboxRecord | undefined {
    const dir = this.dirOf(name);
    if (!fs.existsSync(dir)) return undefined;
    const r = readRecord(dir);
    if (!r) throw new CloudletError('Conflict', `sandbox folder ${dir} exists but has no state.json`, { hint: `cloudlet sandbox delete ${name}` });
    const cur = this.refresh(r);
    if (cur.status === 'running' || cur.status === 'paused' || cur.status === 'starting') {
      throw new CloudletError('Conflict', `sandbox '${name}' is already ${cur.status} (QEMU pid ${cur.pid}); a second resume would fork it`, {
        hint: `use it (cloudlet sandbox exec ${name} ...), stop it, or resume under another --name`,
      });
    }
    if (cur.baseId !== baseId) throw new CloudletError('Conflict', `sandbox '${name}' belongs to base ${cur.baseId.slice(0, 12)}`, { hint: 'choose another --name' });
    if (!cur.savedState || !fs.existsSync(cur.savedState)) {
      throw new CloudletError('Conflict', `sandbox '${name}' is stopped without a saved state and cannot continue`, { hint: `cloudlet sandbox delete ${name}` });
    }
    return cur;
  }

  private async restart(r: SandboxRecord, binary: string, accel: { accel: 'kvm' | 'tcg'; reason: string }, progress: ProgressSink): Promise<SandboxInfo> {
    const dir = this.dirOf(r.id);
    const base = await this.bases.verifyQuick(r.baseId);
    const host = await hostQemu(binary);
    const ports: PortForward[] = [];
    for (const p of r.ports) { try { await checkPortFree(p.host); ports.push(p); } catch { ports.push({ guest: p.guest, host: await freePort() }); } }
    try {
      return await this.boot({ id: r.id, dir, base, vmConfig: r.vmConfig, deviceState: r.savedState!, ports, binary, accel: accel.accel, accelReason: accel.reason, qemuVersion: host.version, progress, createdAt: r.createdAt });
    } catch (e) {
      await this.endProcess(r.id);
      writeRecord(dir, { ...(readRecord(dir) ?? r), status: 'stopped', pid: undefined, cmdline: undefined, error: String((e as Error).message) });
      throw e;
    }
  }

  // ---------------------------------------------------------------- use

  async exec(ref: string, cmd: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const r = this.requireLive(ref, true);
    return this.agentOf(r).exec(cmd, opts);
  }

  async copyIn(ref: string, hostPath: string, guestPath: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (!fs.existsSync(hostPath)) throw new CloudletError('BadInput', `${hostPath} does not exist`);
    const r = this.requireLive(ref, true);
    await this.agentOf(r).copyIn(hostPath, guestPath, opts);
  }

  async pause(ref: string): Promise<SandboxInfo> {
    const r = this.requireLive(ref);
    await (await this.qmpOf(r)).execute('stop');
    return this.setStatus(r, 'paused');
  }

  async unpause(ref: string): Promise<SandboxInfo> {
    const r = this.requireLive(ref);
    await (await this.qmpOf(r)).execute('cont');
    return this.setStatus(r, 'running');
  }

  /** Adds a loopback forward to a running sandbox (QEMU's hostfwd_add). */
  async addPort(ref: string, guest: number, hostPort?: number): Promise<SandboxInfo> {
    const r = this.requireLive(ref);
    const [p] = await this.resolvePorts([{ guest, host: hostPort }]);
    const out = await (await this.qmpOf(r)).hmp(`hostfwd_add net0 tcp:127.0.0.1:${p.host}-:${p.guest}`);
    if (out.trim()) throw new CloudletError('Internal', `hostfwd_add: ${out.trim()}`);
    r.ports.push(p);
    writeRecord(this.dirOf(r.id), r);
    return this.info(r);
  }

  /**
   * Pauses the VM and saves its device state (x-ignore-shared; this also flushes the disk layer).
   * The VM stays paused, so ramFile and diskLayer can be read consistently; unpause() continues it.
   */
  async snapshot(ref: string): Promise<SnapshotResult> {
    const r = this.requireLive(ref);
    const dir = this.dirOf(r.id);
    const qmp = await this.qmpOf(r);
    const stateFile = path.join(dir, 'state.bin');
    let saved: { file: string; bytes: number; sha256: string };
    const st = await qmp.execute('query-status');
    if (st.status === 'postmigrate' && r.savedState === stateFile && fs.existsSync(stateFile)) {
      // Nothing ran since the last snapshot (QEMU stays in postmigrate until cont): that state is current.
      const d = await hashFile(stateFile);
      saved = { file: stateFile, bytes: d.bytes, sha256: d.sha256 };
    } else {
      saved = await saveDeviceStateToFile(qmp, stateFile, { socket: path.join(dir, 'migrate.sock') });
    }
    r.savedState = saved.file;
    this.setStatus(r, 'paused');
    return {
      baseId: r.baseId, ramFile: path.join(dir, 'ram.raw'), diskLayer: path.join(dir, 'disk.qcow2'),
      deviceState: saved.file, deviceStateBytes: saved.bytes, deviceStateSha256: saved.sha256, vmConfig: r.vmConfig,
    };
  }

  /** Saves the state (so `resume BASE --name ID` continues it later) and ends QEMU. */
  async stop(ref: string, opts: { save?: boolean } = {}): Promise<SandboxInfo> {
    const r = this.refresh(this.record(ref));
    const dir = this.dirOf(r.id);
    if (r.status === 'running' || r.status === 'paused') {
      if (opts.save !== false) {
        try { await this.snapshot(r.id); } catch (e) {
          this.log.warn(`sandbox ${r.id}: could not save its state before stopping (${(e as Error).message}); it cannot be continued`);
          r.savedState = undefined;
        }
      }
      const fresh = readRecord(dir) ?? r;
      await this.endProcess(r.id);
      Object.assign(r, { savedState: fresh.savedState });
    }
    r.status = 'stopped';
    r.pid = undefined;
    r.cmdline = undefined;
    writeRecord(dir, r);
    return this.info(r);
  }

  /** Ends the QEMU (if any) and removes the sandbox folder. */
  async delete(ref: string): Promise<string> {
    const r = this.record(ref);
    await this.endProcess(r.id);
    await this.discard(r.id, this.dirOf(r.id));
    return r.id;
  }

  // ---------------------------------------------------------------- restarts

  /**
   * Reconciles state.json with live processes after this process (or another) started:
   * a live QEMU with the recorded pid and exact cmdline whose QMP answers is adopted; one caught
   * mid-resume or not answering is ended; a dead one is marked stopped. Each report says which.
   */
  async adopt(): Promise<AdoptReport[]> {
    if (!fs.existsSync(this.paths.sandboxes)) return [];
    const reports: AdoptReport[] = [];
    for (const id of fs.readdirSync(this.paths.sandboxes).sort()) {
      const dir = this.dirOf(id);
      const r = readRecord(dir);
      if (!r) continue;
      const rep = await this.adoptOne(r, dir);
      if (rep.action !== 'none' && rep.action !== 'attached') (rep.action === 'adopted' ? this.log.info : this.log.warn)(rep.message);
      reports.push(rep);
    }
    return reports;
  }

  private async adoptOne(r: SandboxRecord, dir: string): Promise<AdoptReport> {
    if (r.status === 'stopped' || r.status === 'error') return { id: r.id, action: 'none', message: `sandbox ${r.id}: ${r.status}` };
    const ps = processState(r.pid, r.cmdline);
    if (ps !== 'ours') {
      if (r.status === 'starting') {
        await this.discard(r.id, dir);
        return { id: r.id, pid: r.pid, action: 'cleaned', message: `sandbox ${r.id}: its resume was interrupted and QEMU (pid ${r.pid ?? '-'}) is gone; removed the half-made sandbox` };
      }
      writeRecord(dir, { ...r, status: 'stopped', pid: undefined, cmdline: undefined, error: `QEMU pid ${r.pid} ended while nobody watched` });
      return { id: r.id, pid: r.pid, action: 'gone', message: `sandbox ${r.id}: QEMU pid ${r.pid} is gone${ps === 'other' ? ' (pid now used by another program)' : ''}; marked stopped` };
    }
    if (r.status === 'starting') {
      await killProcess(r.pid!);
      await this.discard(r.id, dir);
      return { id: r.id, pid: r.pid, action: 'ended', message: `sandbox ${r.id}: ended QEMU pid ${r.pid}, whose resume was interrupted; removed the half-made sandbox` };
    }
    const ownerAlive = r.managerPid > 0 && r.managerPid !== process.pid && processState(r.managerPid, undefined) !== 'gone';
    let qmp: QmpClient | undefined;
    try {
      qmp = await QmpClient.connect(path.join(dir, 'qmp.sock'), ownerAlive ? 2000 : 10_000);
      const st = await qmp.execute('query-status', undefined, 5000);
      const status: SandboxStatus = st.running ? 'running' : 'paused';
      if (ownerAlive) {
        qmp.close(); // another live process manages it (QMP takes one client): leave it be
        return { id: r.id, pid: r.pid, action: 'attached', message: `sandbox ${r.id}: managed by process ${r.managerPid}` };
      }
      this.live.set(r.id, { ...this.live.get(r.id), qmp });
      const wasOrphan = r.managerPid !== 0 && r.managerPid !== process.pid;
      writeRecord(dir, { ...r, status, managerPid: process.pid });
      if (!wasOrphan) return { id: r.id, pid: r.pid, action: 'attached', message: `sandbox ${r.id}: ${status} (QEMU pid ${r.pid})` };
      return { id: r.id, pid: r.pid, action: 'adopted', message: `sandbox ${r.id}: adopted QEMU pid ${r.pid} (${status}) left by process ${r.managerPid}, which is gone` };
    } catch (e) {
      qmp?.close();
      if (ownerAlive) return { id: r.id, pid: r.pid, action: 'attached', message: `sandbox ${r.id}: managed by process ${r.managerPid}` };
      await killProcess(r.pid!);
      writeRecord(dir, { ...r, status: 'stopped', pid: undefined, cmdline: undefined, error: `QEMU did not answer QMP after a restart (${(e as Error).message})` });
      return { id: r.id, pid: r.pid, action: 'ended', message: `sandbox ${r.id}: ended QEMU pid ${r.pid}: it did not answer QMP (${(e as Error).message})` };
    }
  }

  /**
   * Lets go of every connection without stopping any VM (a CLI command finishing, a daemon
   * shutting down cleanly). Sandboxes started here are marked as deliberately unmanaged, so the
   * next process attaches to them quietly instead of reporting an orphan.
   */
  close(): void {
    for (const [id, l] of this.live) {
      l.qmp?.close();
      l.agent?.close();
      const dir = this.dirOf(id);
      const r = readRecord(dir);
      if (r && r.managerPid === process.pid) writeRecord(dir, { ...r, managerPid: 0 });
    }
    this.live.clear();
  }

  // ---------------------------------------------------------------- helpers

  private dirOf(id: string): string { return path.join(this.paths.sandboxes, id); }

  private filesOf(dir: string, kernel?: { kernel: string; initrd: string }): VmFiles {
    return vmFilesIn(dir, { path: path.join(dir, 'disk.qcow2'), format: 'qcow2' }, path.join(dir, 'ram.raw'), kernel);
  }

  private record(ref: string): SandboxRecord {
    if (!NAME_RE.test(ref)) throw new CloudletError('BadInput', `'${ref}' is not a sandbox name`);
    const r = readRecord(this.dirOf(ref));
    if (!r) throw new CloudletError('NotFound', `no sandbox '${ref}' in ${this.paths.sandboxes}`, { hint: 'cloudlet sandbox list' });
    return r;
  }

  /** The record with its status corrected if its QEMU died (no write: adopt() does that). */
  private refresh(r: SandboxRecord): SandboxRecord {
    if ((r.status === 'running' || r.status === 'paused') && processState(r.pid, r.cmdline) !== 'ours') {
      return { ...r, status: 'stopped', error: r.error ?? `QEMU pid ${r.pid} is gone` };
    }
    return r;
  }

  private requireLive(ref: string, running = false): SandboxRecord {
    const r = this.refresh(this.record(ref));
    if (r.status !== 'running' && r.status !== 'paused') {
      throw new CloudletError('Conflict', `sandbox '${r.id}' is ${r.status}`, { hint: r.status === 'stopped' ? `cloudlet sandbox resume ${r.baseId.slice(0, 12)} --name ${r.id}` : undefined });
    }
    if (running && r.status === 'paused') throw new CloudletError('Conflict', `sandbox '${r.id}' is paused`, { hint: `cloudlet sandbox pause --resume ${r.id}` });
    return r;
  }

  private async qmpOf(r: SandboxRecord): Promise<QmpClient> {
    const l = this.live.get(r.id) ?? {};
    if (!l.qmp || l.qmp.closed) {
      l.qmp = await QmpClient.connect(path.join(this.dirOf(r.id), 'qmp.sock'), 10_000);
      this.live.set(r.id, l);
    }
    return l.qmp;
  }

  private agentOf(r: SandboxRecord): AgentClient {
    const l = this.live.get(r.id) ?? {};
    l.agent ??= new AgentClient(path.join(this.dirOf(r.id), 'agent.sock'));
    this.live.set(r.id, l);
    return l.agent;
  }

  private setStatus(r: SandboxRecord, status: SandboxStatus): SandboxInfo {
    const dir = this.dirOf(r.id);
    const cur = readRecord(dir) ?? r;
    const next = { ...cur, status, savedState: r.savedState ?? cur.savedState };
    writeRecord(dir, next);
    return this.info(next);
  }

  /** Creates sandboxes/<id>/ atomically (mkdir), so two processes never claim one name. */
  private claim(name?: string): { id: string; dir: string } {
    fs.mkdirSync(this.paths.sandboxes, { recursive: true });
    if (name !== undefined && !NAME_RE.test(name)) throw new CloudletError('BadInput', `sandbox name '${name}' must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)`);
    for (let i = 0; i < 5; i++) {
      const id = name ?? `sb-${crypto.randomBytes(3).toString('hex')}`;
      const dir = this.dirOf(id);
      try { fs.mkdirSync(dir); return { id, dir }; } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        if (name) throw new CloudletError('Conflict', `sandbox '${name}' already exists`, { hint: `cloudlet sandbox delete ${name}, or choose another --name` });
      }
    }
    throw new CloudletError('Internal', 'could not pick a free sandbox id');
  }

  private async resolvePorts(reqs: PortRequest[]): Promise<PortForward[]> {
    const out: PortForward[] = [];
    for (const q of reqs) {
      const guest = typeof q === 'number' ? q : q.guest;
      if (!Number.isInteger(guest) || guest < 1 || guest > 65535) throw new CloudletError('BadInput', `bad guest port ${guest}`);
      if (out.some((p) => p.guest === guest)) continue;
      const want = typeof q === 'number' ? undefined : q.host;
      if (want) { await checkPortFree(want); out.push({ guest, host: want }); } else out.push({ guest, host: await freePort() });
    }
    return out;
  }

  private async endProcess(id: string): Promise<void> {
    const l = this.live.get(id);
    this.live.delete(id);
    l?.agent?.close();
    const r = readRecord(this.dirOf(id));
    if (r?.pid && processState(r.pid, r.cmdline) === 'ours') {
      let qmp = l?.qmp;
      if (!qmp || qmp.closed) qmp = await QmpClient.connect(path.join(this.dirOf(id), 'qmp.sock'), 3000).catch(() => undefined);
      await stopVm({ pid: r.pid, cmdline: r.cmdline!, qmp }, 3000);
    } else l?.qmp?.close();
  }

  private async discard(id: string, dir: string): Promise<void> {
    await this.endProcess(id).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }

  private info(r: SandboxRecord): SandboxInfo {
    const dir = this.dirOf(r.id);
    return {
      id: r.id, name: r.id, baseId: r.baseId, status: r.status, pid: r.pid, dir, ports: r.ports,
      consoleSocket: path.join(dir, 'console.sock'), agentSocket: path.join(dir, 'agent.sock'), qmpSocket: path.join(dir, 'qmp.sock'),
      accel: r.accel, accelReason: r.accelReason, createdAt: r.createdAt, resumedAt: r.resumedAt, resumeMs: r.resumeMs, error: r.error,
    };
  }
}

/**
 * Test hook: with CLOUDLET_FAILPOINT=<name>, stop here forever (the test then kills this process
 * to check that the next start cleans up). Never set outside tests.
 */
async function failpoint(name: string, pid: number): Promise<void> {
  if (process.env.CLOUDLET_FAILPOINT !== name) return;
  process.stderr.write(`FAILPOINT ${name} qemu=${pid}\n`);
  await new Promise(() => undefined);
}

/** Takes ownership of a prepared file: rename within one filesystem, else copy and remove. */
function moveInto(src: string, dst: string): void {
  try { fs.renameSync(src, dst); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    fs.copyFileSync(src, dst);
    fs.rmSync(src, { force: true });
  }
}
