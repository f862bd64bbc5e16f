/**
 * Sandbox VMs of one store root: resume a base (qcow2 over the base disk + private RAM copy +
 * incoming device state), launch from given files (VM synthesis), a prepared launch (handoff
 * destination), exec/copy through the guest agent, pause/unpause, snapshot, stop, delete, and
 * adopt QEMU processes left by a process that died. Each sandbox lives in sandboxes/<id>/ (see
 * layout.ts) with its record (record.ts); files come from prepareFiles.ts, QEMU starts in start.ts.
 */
import * as fs from 'fs';
import type { Socket } from 'net';
import { CloudletError } from '../common/errors';
import { createLogger, type Logger } from '../common/log';
import { storePaths, type StorePaths } from '../common/paths';
import { noProgress, type ProgressSink } from '../common/progress';
import { BaseStore, type BaseBundle } from '../base/store';
import { hashFile } from '../base/digests';
import type { ExecResult } from '../qemu/agentClient';
import { checkDeviceStateHeader, connectForDeviceState, incomingTimeoutMs, listenForDeviceState, saveDeviceStateToFile } from '../qemu/deviceState';
import { checkHostFor } from '../qemu/host';
import { reclaimPorts, resolvePorts, type PortRequest } from '../qemu/ports';
import { eventTimeMs, type QmpClient, type QmpEvent } from '../qemu/qmp';
import type { VmConfig } from '../qemu/vmconfig';
import { adoptAll, type AdoptReport } from './adopt';
import type { SandboxFiles } from './layout';
import { LiveVms } from './liveVms';
import { checkLaunchFiles, kernelFilesFor, prepareFiles, type FileSources, type RamCopyOptions } from './prepareFiles';
import { readRecord, writeRecord, type SandboxRecord } from './record';
import { SandboxRecords } from './records';
import { runFromState, startSandboxQemu } from './start';
import { failpoint, failpointHit } from '../common/failpoint';
import type { LaunchSpec, PreparedLaunch, ResumeOptions, SandboxInfo, SandboxLayout, SnapshotResult } from './types';

export type { SandboxStatus } from './record';
export type { AdoptReport } from './adopt';
export type { SandboxFiles } from './layout';
export type { PortForward, PortRequest } from '../qemu/ports';
export type { VmConfig } from '../qemu/vmconfig';
export type { ExecResult } from '../qemu/agentClient';
export type * from './types';

/** What a prepared launch (prepareLaunch, claimLaunch) is made from. */
export interface PrepareSpec { baseId: string; vmConfig: VmConfig; ports?: PortRequest[]; name?: string }
/** A prepared launch's files in place, the base RAM copy still going on until `ramReady` (ramInBackground). */
export type PreparedFiles = PreparedLaunch & { ramReady: Promise<void>; ramLeftOut: boolean };

export class SandboxManager {
  readonly paths: StorePaths;
  readonly bases: BaseStore;
  private readonly log: Logger;
  private readonly live = new LiveVms();
  /** Prepared launches' connections to their QEMU's incoming migration socket (startPrepared), until the state goes through them. */
  private readonly incoming = new Map<string, Socket>();
  private readonly records: SandboxRecords;
  /** Deadline of loading a device state (default: incomingTimeoutMs(), 120 s). */
  readonly incomingTimeoutMs: number;

  constructor(opts: { root?: string; log?: Logger; incomingTimeoutMs?: number } = {}) {
    this.paths = storePaths(opts.root);
    this.incomingTimeoutMs = opts.incomingTimeoutMs ?? incomingTimeoutMs();
    this.bases = new BaseStore(this.paths.root);
    this.records = new SandboxRecords(this.paths.sandboxes);
    this.log = opts.log ?? createLogger('sandbox');
  }

  // ---------------------------------------------------------------- queries

  list(): SandboxInfo[] { return this.records.list().map((r) => this.info(r)); }

  get(ref: string): SandboxInfo { return this.info(this.records.refresh(this.records.get(ref))); }

  /** The sandbox's files and VM shape (handoff and overlays read its RAM and disk layer). */
  layout(ref: string): SandboxLayout {
    const r = this.records.get(ref);
    return { id: r.id, baseId: r.baseId, files: this.filesOf(r.id), vmConfig: r.vmConfig };
  }

  /** Base IDs in use by sandboxes of this store (for `base delete`). */
  usersOfBase(baseId: string): string[] { return this.list().filter((s) => s.baseId === baseId).map((s) => s.id); }

  // ---------------------------------------------------------------- start

  /** Resumes a base in a new sandbox (or a stopped sandbox of that base given by name). */
  async resume(baseRef: string, opts: ResumeOptions = {}): Promise<SandboxInfo> {
    const base = await this.bases.verifyQuick(baseRef);
    checkDeviceStateHeader(base.state);
    const existing = opts.name ? this.records.stoppedFor(opts.name, base.id) : undefined;
    if (existing) return this.restart(existing, base, opts.onProgress ?? noProgress);
    return this.start({ base, vmConfig: base.manifest.vm, state: base.state, src: { from: 'base' }, ports: opts.ports, name: opts.name, progress: opts.onProgress, what: `base ${base.id.slice(0, 12)}` });
  }

  /** Starts a sandbox from files the caller prepared (VM synthesis). */
  async launch(spec: LaunchSpec): Promise<SandboxInfo> {
    const base = await this.bases.verifyQuick(spec.baseId);
    const src: FileSources = { from: 'launch', diskLayer: spec.diskLayer, ramFile: spec.ramFile };
    checkLaunchFiles(src, spec.vmConfig);
    if (!fs.existsSync(spec.deviceState)) throw new CloudletError('BadInput', `device state ${spec.deviceState} does not exist`);
    checkDeviceStateHeader(spec.deviceState);
    return this.start({ base, vmConfig: spec.vmConfig, state: spec.deviceState, src, ports: spec.ports, name: spec.name, progress: spec.onProgress, what: `launch of base ${base.id.slice(0, 12)}` });
  }

  /** Claim, files, ports, then the one VM-start path; a failure leaves nothing behind. */
  private async start(o: { base: BaseBundle; vmConfig: VmConfig; state: string; src: FileSources; ports?: PortRequest[]; name?: string; progress?: ProgressSink; what: string }): Promise<SandboxInfo> {
    const progress = o.progress ?? noProgress;
    const { accel } = await checkHostFor(o.vmConfig, o.what);
    const kernel = kernelFilesFor(o.base, o.vmConfig);
    const rec = this.records.claim(o.name, o.base, o.vmConfig, accel, kernel);
    const files = this.filesOf(rec.id);
    let ramReady: Promise<void> | undefined;
    try {
      progress({ phase: 'prepare', message: o.src.from === 'base' ? 'qcow2 layer and private RAM copy' : 'taking the launch files' });
      const [prepared, ports] = await Promise.all([prepareFiles(o.base, o.vmConfig, files, o.src, { ramInBackground: true }), resolvePorts([...o.base.manifest.ports, ...(o.ports ?? [])])]);
      ramReady = prepared.ramReady;
      return await this.boot({ ...rec, ports }, files, o.state, progress, ramReady);
    } catch (e) {
      await ramReady?.catch(() => undefined); // no copy still writing into files being removed
      await this.discard(rec.id);
      throw e;
    }
  }

  /** A stopped sandbox continues from its own saved state; on failure it stays stopped (its files are kept). */
  private async restart(r: SandboxRecord, base: BaseBundle, progress: ProgressSink): Promise<SandboxInfo> {
    const { accel } = await checkHostFor(r.vmConfig, `base ${base.id.slice(0, 12)}`);
    const rec: SandboxRecord = { ...r, status: 'starting', accel: accel.accel, accelReason: accel.reason, ports: await reclaimPorts(r.ports),
      managerPid: process.pid, pid: undefined, cmdline: undefined, error: undefined, kernel: kernelFilesFor(base, r.vmConfig) };
    try {
      return await this.boot(rec, this.filesOf(r.id), r.savedState!, progress);
    } catch (e) {
      await this.live.end(r.id, this.filesOf(r.id));
      writeRecord(this.dirOf(r.id), { ...(readRecord(this.dirOf(r.id)) ?? rec), status: 'stopped', pid: undefined, cmdline: undefined, error: String((e as Error).message) });
      throw e;
    }
  }

  /** QEMU with -incoming defer, agent attached, device state loaded (once `ramReady`), then cont. */
  private async boot(rec: SandboxRecord, files: SandboxFiles, state: string, progress: ProgressSink, ramReady?: Promise<void>): Promise<SandboxInfo> {
    writeRecord(files.dir, { ...rec, status: 'starting' });
    progress({ phase: 'resume', message: `starting QEMU (${rec.accel})` });
    const t0 = Date.now();
    const vm = await startSandboxQemu(this.live, rec, files);
    await failpoint('resume-after-qemu-start', ` qemu=${vm.pid}`);
    const running = await runFromState(rec, files, vm.qmp, state, { timeoutMs: this.incomingTimeoutMs, exited: vm.exited, since: t0, ramReady });
    progress({ phase: 'running', message: `${rec.id} running after ${running.resumeMs} ms` });
    return this.info(running);
  }

  // ------------------------------------------------ prepared launch (handoff destination)

  /**
   * A launch whose RAM and disk are still being written (the handoff destination): claims the
   * sandbox, makes the same files as a resume (base RAM copy, empty qcow2 layer) and picks the
   * ports; the sandbox stays 'starting'. startPrepared() then starts QEMU paused with -incoming
   * defer on those files: the caller goes on writing the RAM file (QEMU maps it shared) and may
   * rewrite the qcow2 in place (QEMU keeps an incoming image inactive and re-reads it when the
   * device state load activates it) until completePrepared(), which loads the device state and
   * continues. delete() discards a prepared sandbox at any point.
   */
  async prepareLaunch(spec: PrepareSpec, o: RamCopyOptions = {}): Promise<PreparedFiles> {
    return (await this.claimLaunch(spec, o)).prepared;
  }

  /**
   * prepareLaunch in two steps (the handoff destination answers begin after the first): what
   * refuses a launch (the base's quick check, host QEMU and accelerator, the kernel files) and the
   * sandbox's claim now; its files and ports behind, in `prepared` (on failure the sandbox is
   * discarded before it rejects).
   */
  async claimLaunch(spec: PrepareSpec, o: RamCopyOptions = {}): Promise<{ id: string; prepared: Promise<PreparedFiles> }> {
    const base = await this.bases.verifyQuick(spec.baseId);
    const { accel } = await checkHostFor(spec.vmConfig, `launch of base ${base.id.slice(0, 12)}`);
    const rec = this.records.claim(spec.name, base, spec.vmConfig, accel, kernelFilesFor(base, spec.vmConfig));
    const files = this.filesOf(rec.id);
    const prepared = (async () => {
      let ramReady: Promise<void> | undefined;
      try {
        // Not in the caller's tick: its answer goes out before the processes start (qemu-img, the RAM copy).
        await new Promise((resolve) => setImmediate(resolve));
        // ramInBackground (synthesis): the RAM file has its size at once, the base RAM copy goes on
        // (ramReady); QEMU may start meanwhile, the RAM must not be written nor the state loaded before
        // (except the chunks of ramLeaveOut when ramLeftOut: the copy leaves them to the caller).
        const [made, ports] = await Promise.all([prepareFiles(base, spec.vmConfig, files, { from: 'base' }, o), resolvePorts([...base.manifest.ports, ...(spec.ports ?? [])])]);
        ramReady = made.ramReady;
        writeRecord(files.dir, { ...rec, ports });
        return { id: rec.id, files, ports, ramReady, ramLeftOut: made.ramLeftOut };
      } catch (e) {
        await ramReady?.catch(() => undefined);
        await this.discard(rec.id);
        throw e;
      }
    })();
    return { id: rec.id, prepared };
  }

  /**
   * Starts the QEMU of a prepared launch, listening for the device state on its migration socket and
   * already connected to (it waits for the stream there), and starting the CPUs by itself once a
   * state saved from a running VM loaded: completePrepared() then only writes the state (measured
   * under load: connecting at that point took up to 175 ms of the guest's pause; the `cont` round
   * trip after QEMU's "completed" 21 ms).
   */
  async startPrepared(id: string): Promise<void> {
    const rec = readRecord(this.dirOf(id));
    if (!rec || rec.status !== 'starting' || rec.pid) throw new CloudletError('Conflict', `sandbox '${id}' is not a prepared launch`);
    const files = this.filesOf(id);
    // Test hook: a prepared launch's QEMU that does not start (a host port taken meanwhile, say).
    if (failpointHit('prepared-qemu-fails')) throw new CloudletError('Unavailable', `failpoint prepared-qemu-fails: QEMU of sandbox '${id}' did not start`);
    const vm = await startSandboxQemu(this.live, rec, files, { autostart: true });
    await listenForDeviceState(vm.qmp, files.migrateSocket);
    this.incoming.set(id, await connectForDeviceState(files.migrateSocket, this.incomingTimeoutMs));
  }

  /**
   * Streams the device state into a started prepared launch and continues the VM. QEMU's event
   * stamps (ms since the epoch, QEMU's clock): `loadingAtMs` its incoming migration became active
   * (it took the connection; before this call when connected to at start), `resumedAtMs` it emitted
   * RESUME (the end of the guest's pause).
   */
  async completePrepared(id: string, deviceState: Buffer, timeoutMs = this.incomingTimeoutMs): Promise<SandboxInfo & { loadingAtMs?: number; resumedAtMs?: number }> {
    const rec = readRecord(this.dirOf(id));
    const qmp = this.live.openQmp(id);
    if (!rec || rec.status !== 'starting' || !rec.pid || !qmp) throw new CloudletError('Conflict', `sandbox '${id}' is not a started prepared launch`);
    const at: { loadingAtMs?: number; resumedAtMs?: number } = {};
    const onEvent = (e: QmpEvent) => {
      if (e.event === 'RESUME') at.resumedAtMs ??= eventTimeMs(e) ?? Date.now();
      else if (e.event === 'MIGRATION' && e.data?.status === 'active') at.loadingAtMs ??= eventTimeMs(e);
    };
    qmp.on('event', onEvent);
    const connected = this.incoming.get(id);
    this.incoming.delete(id);
    try {
      const running = await runFromState(rec, this.filesOf(id), qmp, deviceState, { timeoutMs, listening: true, connected });
      // QEMU emits RESUME when it starts the CPUs (by itself, or running `cont`), before it answers: already here.
      return { ...this.info(running), ...Object.fromEntries(Object.entries(at).filter(([, v]) => v !== undefined)) };
    } finally {
      qmp.off('event', onEvent);
    }
  }

  /** The QMP connection of a live sandbox (handoff: stop and device-state save without a file). */
  async qmpClient(ref: string): Promise<QmpClient> { return this.live.qmp(ref, this.filesOf(this.records.requireLive(ref).id)); }

  // ---------------------------------------------------------------- use

  async exec(ref: string, cmd: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const r = this.records.requireLive(ref, true);
    return this.live.agent(r.id, this.filesOf(r.id)).exec(cmd, opts);
  }

  async copyIn(ref: string, hostPath: string, guestPath: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (!fs.existsSync(hostPath)) throw new CloudletError('BadInput', `${hostPath} does not exist`);
    const r = this.records.requireLive(ref, true);
    await this.live.agent(r.id, this.filesOf(r.id)).copyIn(hostPath, guestPath, opts);
  }

  async pause(ref: string): Promise<SandboxInfo> {
    const r = this.records.requireLive(ref);
    await (await this.live.qmp(r.id, this.filesOf(r.id))).execute('stop');
    return this.info(this.records.setStatus(r, 'paused'));
  }

  /**
   * Records as paused a VM that QEMU stopped by itself (the end of a migration: its STOP event was
   * seen), without a QMP `stop`: QEMU's main loop answers only after the migration's end.
   */
  markPaused(ref: string): SandboxInfo {
    return this.info(this.records.setStatus(this.records.requireLive(ref), 'paused'));
  }

  async unpause(ref: string): Promise<SandboxInfo> {
    const r = this.records.requireLive(ref);
    await (await this.live.qmp(r.id, this.filesOf(r.id))).execute('cont');
    return this.info(this.records.setStatus(r, 'running'));
  }

  /** Adds a loopback forward to a running sandbox (QEMU's hostfwd_add). */
  async addPort(ref: string, guest: number, hostPort?: number): Promise<SandboxInfo> {
    const r = this.records.requireLive(ref);
    const [p] = await resolvePorts([{ guest, host: hostPort }]);
    const out = await (await this.live.qmp(r.id, this.filesOf(r.id))).hmp(`hostfwd_add net0 tcp:127.0.0.1:${p.host}-:${p.guest}`);
    if (out.trim()) throw new CloudletError('Internal', `hostfwd_add: ${out.trim()}`);
    r.ports.push(p);
    writeRecord(this.dirOf(r.id), r);
    return this.info(r);
  }

  /**
   * Pauses the VM and saves its device state (x-ignore-shared; this also flushes the disk layer).
   * The VM stays paused, so ramFile and diskLayer can be read consistently; unpause() continues it.
   * A VM that has not run since its last save (QEMU stays in postmigrate until cont, and refuses a
   * second migration) gives that save again: overlays of one paused sandbox have identical inputs.
   */
  async snapshot(ref: string): Promise<SnapshotResult> {
    const r = this.records.requireLive(ref);
    const files = this.filesOf(r.id);
    const qmp = await this.live.qmp(r.id, files);
    let saved: { file: string; bytes: number; sha256: string };
    const st = await qmp.execute('query-status');
    if (st.status === 'postmigrate' && r.savedState && fs.existsSync(r.savedState)) {
      const d = await hashFile(r.savedState);
      saved = { file: r.savedState, bytes: d.bytes, sha256: d.sha256 };
    } else {
      saved = await saveDeviceStateToFile(qmp, files.savedState, { socket: files.migrateSocket });
    }
    r.savedState = saved.file;
    this.records.setStatus(r, 'paused');
    return {
      baseId: r.baseId, ramFile: files.ram, diskLayer: files.disk,
      deviceState: saved.file, deviceStateBytes: saved.bytes, deviceStateSha256: saved.sha256, vmConfig: r.vmConfig,
    };
  }

  /** Saves the state (so `resume BASE --name ID` continues it later) and ends QEMU. */
  async stop(ref: string, opts: { save?: boolean } = {}): Promise<SandboxInfo> {
    const r = this.records.refresh(this.records.get(ref));
    const dir = this.dirOf(r.id);
    if (r.status === 'running' || r.status === 'paused') {
      if (opts.save !== false) {
        try { await this.snapshot(r.id); } catch (e) {
          this.log.warn(`sandbox ${r.id}: could not save its state before stopping (${(e as Error).message}); it cannot be continued`);
          r.savedState = undefined;
        }
      }
      const fresh = readRecord(dir) ?? r;
      await this.live.end(r.id, this.filesOf(r.id));
      Object.assign(r, { savedState: fresh.savedState });
    }
    writeRecord(dir, { ...r, status: 'stopped', pid: undefined, cmdline: undefined });
    return this.info({ ...r, status: 'stopped', pid: undefined });
  }

  /** Ends the QEMU (if any) and removes the sandbox folder. */
  async delete(ref: string): Promise<string> {
    const r = this.records.get(ref);
    await this.discard(r.id);
    return r.id;
  }

  // ---------------------------------------------------------------- restarts

  /** Reconciles records with live QEMU processes after a start (see adopt.ts); each report says what was done. */
  async adopt(): Promise<AdoptReport[]> {
    return adoptAll({ sandboxes: this.paths.sandboxes, live: this.live, log: this.log, discard: (id) => this.discard(id) });
  }

  /**
   * Lets go of every connection without stopping any VM (a CLI command finishing, a daemon
   * shutting down cleanly). Sandboxes started here are marked as deliberately unmanaged, so the
   * next process attaches to them quietly instead of reporting an orphan.
   */
  close(): void {
    this.live.releaseAll((id) => {
      const r = readRecord(this.dirOf(id));
      if (r && r.managerPid === process.pid) writeRecord(this.dirOf(id), { ...r, managerPid: 0 });
    });
  }

  // ---------------------------------------------------------------- helpers

  private dirOf(id: string): string { return this.records.dirOf(id); }

  private filesOf(id: string): SandboxFiles { return this.records.filesOf(id); }

  private info(r: SandboxRecord): SandboxInfo { return this.records.info(r); }

  private async discard(id: string): Promise<void> {
    await this.live.end(id, this.filesOf(id)).catch(() => undefined);
    this.incoming.get(id)?.destroy(); // after its QEMU ended: closed first, QEMU would fail the load and exit by itself
    this.incoming.delete(id);
    fs.rmSync(this.dirOf(id), { recursive: true, force: true });
  }
}
