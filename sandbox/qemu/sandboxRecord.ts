/** state.json of a sandbox: what a later process needs to find, adopt or clean its QEMU. */
import * as fs from 'fs';
import * as path from 'path';
import type { PortForward, VmConfig } from './vmconfig';
import { writeFileAtomic } from './files';

export type SandboxStatus = 'starting' | 'running' | 'paused' | 'stopped' | 'error';

export interface SandboxRecord {
  id: string;                 // = the folder name under sandboxes/ (the name the user gave, or sb-xxxxxx)
  baseId: string;
  createdAt: string;
  status: SandboxStatus;
  vmConfig: VmConfig;
  accel: 'kvm' | 'tcg';
  accelReason: string;
  ports: PortForward[];
  pid?: number;
  cmdline?: string[];         // exact argv of the QEMU process: with pid, how it is recognised
  /** Process that manages the QEMU now; 0 = nobody on purpose (a CLI command that finished). */
  managerPid: number;
  resumedAt?: string;
  resumeMs?: number;          // QEMU start -> guest running
  savedState?: string;        // device state written by stop/snapshot (restart continues from it)
  kernel?: { kernel: string; initrd: string };
  error?: string;
}

export function recordPath(dir: string): string { return path.join(dir, 'state.json'); }

export function readRecord(dir: string): SandboxRecord | undefined {
  try { return JSON.parse(fs.readFileSync(recordPath(dir), 'utf8')) as SandboxRecord; } catch { return undefined; }
}

export function writeRecord(dir: string, r: SandboxRecord): void {
  writeFileAtomic(recordPath(dir), JSON.stringify(r, null, 2) + '\n');
}
