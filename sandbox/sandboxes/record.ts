/**
 * state.json of a sandbox: what a later process needs to find, adopt or clean its QEMU. A sandbox
 * folder is created with its record already inside (claimFolder), so a folder without one is
 * debris of a crash, never a sandbox being set up.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { writeFileAtomic } from '../qemu/files';
import type { PortForward, VmConfig } from '../qemu/vmconfig';
import type { KernelFiles } from './layout';

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
  kernel?: KernelFiles;
  error?: string;
}

const RECORD = 'state.json';
/** Folders being claimed: sandboxes/.claim-<pid>-<random>, renamed to their id once the record is in. */
export const CLAIM_PREFIX = '.claim-';
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function readRecord(dir: string): SandboxRecord | undefined {
  try { return JSON.parse(fs.readFileSync(path.join(dir, RECORD), 'utf8')) as SandboxRecord; } catch { return undefined; }
}

export function writeRecord(dir: string, r: SandboxRecord): void {
  writeFileAtomic(path.join(dir, RECORD), JSON.stringify(r, null, 2) + '\n');
}

/**
 * Creates sandboxes/<id>/ holding `initial` as its record, atomically: the record is written in a
 * private folder that is then renamed to the id (a rename onto an existing, non-empty folder fails),
 * so two processes never claim one name and no sandbox folder ever lacks a record.
 */
export function claimFolder(sandboxes: string, name: string | undefined, initial: Omit<SandboxRecord, 'id'>): { id: string; dir: string } {
  fs.mkdirSync(sandboxes, { recursive: true });
  if (name !== undefined && !NAME_RE.test(name)) throw new CloudletError('BadInput', `sandbox name '${name}' must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)`);
  for (let i = 0; i < 5; i++) {
    const id = name ?? `sb-${crypto.randomBytes(3).toString('hex')}`;
    const dir = path.join(sandboxes, id);
    const tmp = path.join(sandboxes, `${CLAIM_PREFIX}${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    fs.mkdirSync(tmp);
    try {
      writeRecord(tmp, { id, ...initial });
      if (fs.existsSync(dir)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      fs.renameSync(tmp, dir);
      return { id, dir };
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw e;
      if (name) throw new CloudletError('Conflict', `sandbox '${name}' already exists`, { hint: `cloudlet sandbox delete ${name}, or choose another --name` });
    }
  }
  throw new CloudletError('Internal', 'could not pick a free sandbox id');
}

/** The pid in a claim folder's name, if it is one. */
export function claimOwner(entry: string): number | undefined {
  const m = new RegExp(`^${CLAIM_PREFIX.replace('.', '\\.')}(\\d+)-`).exec(entry);
  return m ? Number(m[1]) : undefined;
}
