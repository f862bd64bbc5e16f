/**
 * The files of one sandbox, sandboxes/<id>/ under a store root. The only place that knows their
 * names: the manager, handoff and overlay code take a SandboxFiles instead of joining names.
 */
import * as path from 'path';
import { vmFilesIn } from '../qemu/vm';
import type { VmFiles } from '../qemu/vmconfig';

export interface SandboxFiles {
  dir: string;
  /** state.json: the sandbox's record (see record.ts). */
  record: string;
  /** qcow2 layer whose backing file is the base's raw disk. */
  disk: string;
  /** Raw page-aligned guest RAM, mapped shared by QEMU. */
  ram: string;
  /** The overlay a synthesized VM was made from, kept for its handoff's round 0 (handoff/launchRound.ts). */
  launchOverlay: string;
  /** The ID of the overlay that VM was made from: round 0 uses launchOverlay only if it still has it. */
  launchOverlayId: string;
  /** What the destination holds after that round 0, as digests, computed after synthesis (handoff/launchDigests.ts). */
  launchDigests: string;
  /** Device state written by snapshot/stop (restart continues from it). */
  savedState: string;
  qemuLog: string;
  qmpSocket: string;
  consoleSocket: string;
  consoleLog: string;
  agentSocket: string;
  migrateSocket: string;
  pidFile: string;
}

/** Kernel and initrd of a base that boots from them (kept in the base bundle, not copied). */
export interface KernelFiles { kernel: string; initrd: string }

export function sandboxFiles(dir: string): SandboxFiles {
  const disk = path.join(dir, 'disk.qcow2'), ram = path.join(dir, 'ram.raw');
  const v = vmFilesIn(dir, { path: disk, format: 'qcow2' }, ram);
  return {
    dir, record: path.join(dir, 'state.json'), disk, ram, launchOverlay: path.join(dir, 'launch.overlay'), launchOverlayId: path.join(dir, 'launch.overlay.id'), launchDigests: path.join(dir, 'launch.digests'), savedState: path.join(dir, 'state.bin'),
    qemuLog: v.qemuLog, qmpSocket: v.qmpSocket, consoleSocket: v.consoleSocket, consoleLog: v.consoleLog,
    agentSocket: v.agentSocket, migrateSocket: v.migrateSocket, pidFile: v.pidFile,
  };
}

/** What QEMU is started with for this sandbox. */
export function vmFilesOf(f: SandboxFiles, kernel?: KernelFiles): VmFiles {
  return vmFilesIn(f.dir, { path: f.disk, format: 'qcow2' }, f.ram, kernel);
}

/** QEMU's -name for a sandbox: with the folder in its arguments, how a QEMU of ours is recognised. */
export function qemuNameOf(id: string): string { return `cloudlet-sandbox-${id}`; }
