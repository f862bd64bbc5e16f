/**
 * The records of a store's sandboxes as the manager reads them: by reference, corrected for a
 * QEMU that died, checked for the state an operation needs, and turned into the SandboxInfo view.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import type { BaseBundle } from '../base/store';
import type { AccelChoice } from '../qemu/accel';
import type { PortForward } from '../qemu/ports';
import { processState } from '../qemu/process';
import type { VmConfig } from '../qemu/vmconfig';
import { sandboxFiles, type KernelFiles, type SandboxFiles } from './layout';
import { claimFolder, NAME_RE, readRecord, writeRecord, type SandboxRecord, type SandboxStatus } from './record';
import type { SandboxInfo } from './types';

export class SandboxRecords {
  constructor(readonly root: string) {}

  dirOf(id: string): string { return path.join(this.root, id); }

  filesOf(id: string): SandboxFiles { return sandboxFiles(this.dirOf(id)); }

  /** Every sandbox, its status corrected for dead QEMUs. */
  list(): SandboxRecord[] {
    if (!fs.existsSync(this.root)) return [];
    const out: SandboxRecord[] = [];
    for (const id of fs.readdirSync(this.root).sort()) {
      if (!NAME_RE.test(id)) continue; // claims in progress (.claim-*)
      const r = readRecord(this.dirOf(id));
      if (r) out.push(this.refresh(r));
    }
    return out;
  }

  get(ref: string): SandboxRecord {
    if (!NAME_RE.test(ref)) throw new CloudletError('BadInput', `'${ref}' is not a sandbox name`);
    const r = readRecord(this.dirOf(ref));
    if (!r) throw new CloudletError('NotFound', `no sandbox '${ref}' in ${this.root}`, { hint: 'cloudlet sandbox list' });
    return r;
  }

  /** The record with its status corrected if its QEMU died (no write: adopt() does that). */
  refresh(r: SandboxRecord): SandboxRecord {
    if ((r.status === 'running' || r.status === 'paused') && processState(r.pid, r.cmdline) !== 'ours') {
      return { ...r, status: 'stopped', error: r.error ?? `QEMU pid ${r.pid} is gone` };
    }
    return r;
  }

  requireLive(ref: string, running = false): SandboxRecord {
    const r = this.refresh(this.get(ref));
    if (r.status !== 'running' && r.status !== 'paused') {
      throw new CloudletError('Conflict', `sandbox '${r.id}' is ${r.status}`, { hint: r.status === 'stopped' ? `cloudlet sandbox resume ${r.baseId.slice(0, 12)} --name ${r.id}` : undefined });
    }
    if (running && r.status === 'paused') throw new CloudletError('Conflict', `sandbox '${r.id}' is paused`, { hint: `cloudlet sandbox pause --resume ${r.id}` });
    return r;
  }

  /** A stopped sandbox given by name, to restart from its own saved state; a live one is refused. */
  stoppedFor(name: string, baseId: string): SandboxRecord | undefined {
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

  /** A new sandbox folder with its 'starting' record, managed by this process. */
  claim(name: string | undefined, base: BaseBundle, vmConfig: VmConfig, accel: AccelChoice, kernel: KernelFiles | undefined): SandboxRecord {
    const initial = {
      baseId: base.id, createdAt: new Date().toISOString(), status: 'starting' as const, vmConfig,
      accel: accel.accel, accelReason: accel.reason, ports: [] as PortForward[], managerPid: process.pid, kernel,
    };
    const { id } = claimFolder(this.root, name, initial);
    return { id, ...initial };
  }

  setStatus(r: SandboxRecord, status: SandboxStatus): SandboxRecord {
    const dir = this.dirOf(r.id);
    const cur = readRecord(dir) ?? r;
    const next = { ...cur, status, savedState: r.savedState ?? cur.savedState };
    writeRecord(dir, next);
    return next;
  }

  info(r: SandboxRecord): SandboxInfo {
    const f = this.filesOf(r.id);
    return {
      id: r.id, name: r.id, baseId: r.baseId, status: r.status, pid: r.pid, dir: f.dir, ports: r.ports,
      consoleSocket: f.consoleSocket, agentSocket: f.agentSocket, qmpSocket: f.qmpSocket,
      accel: r.accel, accelReason: r.accelReason, createdAt: r.createdAt, resumedAt: r.resumedAt, resumeMs: r.resumeMs, error: r.error,
    };
  }
}
