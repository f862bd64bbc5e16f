/** What the sandbox manager takes and gives. */
import type { ProgressSink } from '../common/progress';
import type { PortForward, PortRequest } from '../qemu/ports';
import type { VmConfig } from '../qemu/vmconfig';
import type { SandboxFiles } from './layout';
import type { SandboxStatus } from './record';

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

/** What handoff and overlay code may know of a sandbox beyond SandboxInfo: its files and VM shape. */
export interface SandboxLayout { id: string; baseId: string; files: SandboxFiles; vmConfig: VmConfig }

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
export interface PreparedLaunch { id: string; files: SandboxFiles; ports: PortForward[] }

export interface SnapshotResult {
  baseId: string;
  ramFile: string;               // the sandbox's RAM file: consistent while the VM stays paused
  diskLayer: string;             // the sandbox's qcow2 layer (flushed)
  deviceState: string;           // device state just saved (x-ignore-shared)
  deviceStateBytes: number;
  deviceStateSha256: string;
  vmConfig: VmConfig;
}
