/**
 * Reconciling sandboxes with live processes after this process (or another) started. Every QEMU
 * whose -name and folder say it belongs to a sandbox of this store is found in /proc, whatever the
 * records say, so a crash at any point leaves nothing untracked:
 * - a live QEMU with the recorded pid and exact cmdline whose QMP answers is adopted;
 * - one caught mid-start (record 'starting', its manager gone) is ended and the sandbox removed,
 *   found by its name when the record has no pid yet;
 * - a dead one is marked stopped; any other QEMU named for a sandbox (stopped, without a record,
 *   without a folder) is ended; folders without a record are removed.
 * Sandboxes whose managing process is alive are left to it.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from '../common/log';
import { findProcesses, killProcess, processState } from '../qemu/process';
import { QmpClient } from '../qemu/qmp';
import { qemuNameOf, sandboxFiles } from './layout';
import type { LiveVms } from './liveVms';
import { claimOwner, readRecord, writeRecord, type SandboxRecord, type SandboxStatus } from './record';

export interface AdoptReport {
  id: string;
  pid?: number;
  action: 'adopted' | 'attached' | 'ended' | 'gone' | 'cleaned' | 'none';
  message: string;
}

export interface AdoptContext {
  sandboxes: string;
  live: LiveVms;
  log: Logger;
  /** Ends the sandbox's QEMU (as recorded) and removes its folder. */
  discard(id: string, dir: string): Promise<void>;
}

type Proc = { pid: number; cmdline: string[] };

/** QEMUs named for a sandbox of this store (-name cloudlet-sandbox-ID and an argument inside sandboxes/ID/), by ID. */
export function sandboxQemus(sandboxes: string): Map<string, Proc[]> {
  const roots = [...new Set([sandboxes, path.resolve(sandboxes)])];
  const prefix = qemuNameOf('');
  const out = new Map<string, Proc[]>();
  for (const p of findProcesses((argv) => {
    const i = argv.indexOf('-name');
    const name = i >= 0 ? argv[i + 1] : undefined;
    if (!name?.startsWith(prefix)) return false;
    const id = name.slice(prefix.length);
    return argv.some((a) => roots.some((r) => a.includes(path.join(r, id) + path.sep)));
  })) {
    const id = p.cmdline[p.cmdline.indexOf('-name') + 1].slice(prefix.length);
    out.set(id, [...(out.get(id) ?? []), p]);
  }
  return out;
}

const alive = (pid: number) => pid > 0 && processState(pid, undefined) !== 'gone';

async function endAll(procs: Proc[] | undefined, keep?: number): Promise<number[]> {
  const ended: number[] = [];
  for (const p of procs ?? []) {
    if (p.pid === keep || processState(p.pid, p.cmdline) !== 'ours') continue;
    await killProcess(p.pid);
    ended.push(p.pid);
  }
  return ended;
}

export async function adoptAll(ctx: AdoptContext): Promise<AdoptReport[]> {
  if (!fs.existsSync(ctx.sandboxes)) return [];
  const qemus = sandboxQemus(ctx.sandboxes);
  const reports: AdoptReport[] = [];
  for (const entry of fs.readdirSync(ctx.sandboxes).sort()) {
    const dir = path.join(ctx.sandboxes, entry);
    const claimer = claimOwner(entry);
    if (claimer !== undefined) {
      // A claim cut between its mkdir and its rename: nothing started from it.
      if (!alive(claimer)) fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const procs = qemus.get(entry);
    qemus.delete(entry);
    const r = readRecord(dir);
    if (!r) {
      const ended = await endAll(procs);
      fs.rmSync(dir, { recursive: true, force: true });
      reports.push({ id: entry, pid: ended[0], action: 'cleaned', message: `sandbox folder ${entry} had no record (its set-up was cut short); removed it${ended.length ? `, ended QEMU pid ${ended.join(', ')}` : ''}` });
      continue;
    }
    reports.push(await adoptOne(ctx, r, dir, procs ?? []));
  }
  // Named for a sandbox whose folder is gone (a delete cut short): nothing can use it.
  for (const [id, procs] of qemus) {
    const ended = await endAll(procs);
    if (ended.length) reports.push({ id, pid: ended[0], action: 'ended', message: `sandbox ${id}: ended QEMU pid ${ended.join(', ')}, left running without a sandbox folder` });
  }
  for (const rep of reports) if (rep.action !== 'none' && rep.action !== 'attached') (rep.action === 'adopted' ? ctx.log.info : ctx.log.warn)(rep.message);
  return reports;
}

async function adoptOne(ctx: AdoptContext, r: SandboxRecord, dir: string, procs: Proc[]): Promise<AdoptReport> {
  const ownerAlive = r.managerPid > 0 && r.managerPid !== process.pid && alive(r.managerPid);
  const managed = { id: r.id, pid: r.pid, action: 'attached' as const, message: `sandbox ${r.id}: managed by process ${r.managerPid}` };
  if (r.status === 'stopped' || r.status === 'error') {
    const ended = ownerAlive ? [] : await endAll(procs);
    if (!ended.length) return { id: r.id, action: 'none', message: `sandbox ${r.id}: ${r.status}` };
    return { id: r.id, pid: ended[0], action: 'ended', message: `sandbox ${r.id}: ${r.status}, but QEMU pid ${ended.join(', ')} still ran for it; ended` };
  }
  if (r.status === 'starting') {
    if (ownerAlive) return managed;
    if (r.managerPid === process.pid) return { id: r.id, pid: r.pid, action: 'attached', message: `sandbox ${r.id}: being started by this process` };
    // The record may lack the pid (cut before QEMU's spawn was recorded): the QEMU is found by its name.
    const recorded = r.pid && processState(r.pid, r.cmdline) === 'ours' ? [{ pid: r.pid, cmdline: r.cmdline! }] : [];
    const ended = await endAll([...recorded, ...procs.filter((p) => p.pid !== r.pid)]);
    await ctx.discard(r.id, dir);
    if (!ended.length) return { id: r.id, pid: r.pid, action: 'cleaned', message: `sandbox ${r.id}: its start was interrupted and QEMU (pid ${r.pid ?? '-'}) is gone; removed the half-made sandbox` };
    return { id: r.id, pid: ended[0], action: 'ended', message: `sandbox ${r.id}: ended QEMU pid ${ended.join(', ')}, whose start was interrupted; removed the half-made sandbox` };
  }
  const ps = processState(r.pid, r.cmdline);
  const strays = ownerAlive ? [] : await endAll(procs, ps === 'ours' ? r.pid : undefined);
  const also = strays.length ? `; ended stray QEMU pid ${strays.join(', ')} named for it` : '';
  if (ps !== 'ours') {
    writeRecord(dir, { ...r, status: 'stopped', pid: undefined, cmdline: undefined, error: `QEMU pid ${r.pid} ended while nobody watched` });
    return { id: r.id, pid: r.pid, action: 'gone', message: `sandbox ${r.id}: QEMU pid ${r.pid} is gone${ps === 'other' ? ' (pid now used by another program)' : ''}; marked stopped${also}` };
  }
  // QMP takes one client: a sandbox another live process manages is left to it.
  if (ownerAlive) return managed;
  const files = sandboxFiles(dir);
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(files.qmpSocket, 10_000);
    const st = await qmp.execute('query-status', undefined, 5000);
    const status: SandboxStatus = st.running ? 'running' : 'paused';
    ctx.live.set(r.id, { qmp });
    const wasOrphan = r.managerPid !== 0 && r.managerPid !== process.pid;
    writeRecord(dir, { ...r, status, managerPid: process.pid });
    if (!wasOrphan) return { id: r.id, pid: r.pid, action: 'attached', message: `sandbox ${r.id}: ${status} (QEMU pid ${r.pid})${also}` };
    return { id: r.id, pid: r.pid, action: 'adopted', message: `sandbox ${r.id}: adopted QEMU pid ${r.pid} (${status}) left by process ${r.managerPid}, which is gone${also}` };
  } catch (e) {
    qmp?.close();
    await killProcess(r.pid!);
    writeRecord(dir, { ...r, status: 'stopped', pid: undefined, cmdline: undefined, error: `QEMU did not answer QMP after a restart (${(e as Error).message})` });
    return { id: r.id, pid: r.pid, action: 'ended', message: `sandbox ${r.id}: ended QEMU pid ${r.pid}: it did not answer QMP (${(e as Error).message})` };
  }
}
