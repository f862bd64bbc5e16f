/**
 * Start one QEMU for a VM config and connect QMP: the step base create, resume, launch and the
 * benchmarks share. The caller owns the folder of `files` (sockets, log, pidfile live there).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { buildQemuArgs, type PortForward, type VmConfig, type VmFiles } from './vmconfig';
import { startQemu, killProcess, processState, waitGone, type StartedQemu } from './process';
import { QmpClient } from './qmp';

export interface RunningVm { pid: number; cmdline: string[]; qmp: QmpClient; files: VmFiles; exited: Promise<number | null> }

/** Socket and log paths of a VM whose files live in `dir` (the names every VM folder uses). */
export function vmFilesIn(dir: string, disk: { path: string; format: 'raw' | 'qcow2' }, ramFile: string, kernel?: { kernel: string; initrd: string }): VmFiles {
  const f: VmFiles = {
    disk: disk.path, diskFormat: disk.format, ramFile,
    kernel: kernel?.kernel, initrd: kernel?.initrd,
    qmpSocket: path.join(dir, 'qmp.sock'),
    consoleSocket: path.join(dir, 'console.sock'),
    consoleLog: path.join(dir, 'console.log'),
    agentSocket: path.join(dir, 'agent.sock'),
    migrateSocket: path.join(dir, 'migrate.sock'),
    pidFile: path.join(dir, 'qemu.pid'),
    qemuLog: path.join(dir, 'qemu.log'),
  };
  // sockaddr_un holds 107 bytes: a deep store folder would fail inside QEMU with a vague message.
  const longest = [f.qmpSocket, f.consoleSocket, f.agentSocket, f.migrateSocket].reduce((a, b) => (b.length > a.length ? b : a));
  if (Buffer.byteLength(longest) > 107) {
    throw new CloudletError('BadInput', `the store path is too long for unix sockets (${longest})`, { hint: 'use a shorter CLOUDLET_HOME / --data folder' });
  }
  return f;
}

/** The last lines of a log or console file, without terminal escape sequences and carriage returns. */
export function logTail(file: string, lines = 15): string {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { return ''; }
  // eslint-disable-next-line no-control-regex
  text = text.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]/g, '').replace(/\r+\n/g, '\n').replace(/\r/g, '\n');
  return text.split('\n').map((l) => l.trimEnd()).filter((l) => l).slice(-lines).join('\n');
}

/** A qcow2 image whose header names a backing file (false when unreadable: QEMU then says why). */
export function qcow2HasBacking(file: string): boolean {
  const b = Buffer.alloc(16);
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    if (fs.readSync(fd, b, 0, 16, 0) < 16 || b.readUInt32BE(0) !== 0x514649fb) return false;
    return b.readBigUInt64BE(8) !== 0n;
  } catch { return false; } finally { if (fd !== undefined) fs.closeSync(fd); }
}

export async function startVm(o: {
  binary: string; name: string; cfg: VmConfig; files: VmFiles; accel: 'kvm' | 'tcg';
  incoming?: boolean; paused?: boolean; ports?: PortForward[];
  /** SMBIOS serial number (a cloud-init NoCloud seed address), only when a base is created. */
  smbiosSerial?: string;
  /** Called as soon as the process exists (before anything is awaited): the caller records its pid. */
  onSpawn?: (p: StartedQemu) => void;
}): Promise<RunningVm> {
  for (const s of [o.files.qmpSocket, o.files.consoleSocket, o.files.agentSocket]) fs.rmSync(s, { force: true });
  const diskBacked = o.files.diskFormat === 'qcow2' && qcow2HasBacking(o.files.disk);
  const args = buildQemuArgs(o.cfg, o.files, { name: o.name, accel: o.accel, incoming: o.incoming, paused: o.paused, ports: o.ports, smbiosSerial: o.smbiosSerial, diskBacked });
  const log = o.files.qemuLog;
  const started = startQemu(o.binary, args, log);
  o.onSpawn?.(started);
  let early: unknown;
  const exitedEarly = started.exited.then((code) => { early = code; }, (e) => { early = e; });
  // The race against QEMU's exit ends the QMP retries too: a lost race must not keep the process waiting.
  const giveUp = new AbortController();
  try {
    const qmp = await Promise.race([
      QmpClient.connect(o.files.qmpSocket, 60_000, giveUp.signal),
      exitedEarly.then(() => { throw early instanceof Error ? early : new CloudletError('Internal', `QEMU exited at start (code ${String(early)}): ${logTail(log)}`); }),
    ]);
    return { pid: started.pid, cmdline: started.cmdline, qmp, files: o.files, exited: started.exited };
  } catch (e) {
    if (started.pid > 0 && processState(started.pid, started.cmdline) === 'ours') await killProcess(started.pid, 1000);
    throw e;
  } finally {
    giveUp.abort();
  }
}

/** Asks QEMU to quit, then makes sure the process is gone. */
export async function stopVm(vm: { pid: number; cmdline: string[]; qmp?: QmpClient }, graceMs = 5000): Promise<void> {
  if (processState(vm.pid, vm.cmdline) !== 'ours') { vm.qmp?.close(); return; }
  try { await vm.qmp?.execute('quit', undefined, 3000); } catch { /* killed below if needed */ }
  vm.qmp?.close();
  if (!(await waitGone(vm.pid, graceMs))) await killProcess(vm.pid);
}
