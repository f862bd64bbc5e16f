/**
 * The child process that computes a synthesized VM's launch digests (handoff/launchDigests.ts: what
 * the destination holds once its handoff's round 0 is applied), started once the VM runs, at nice 19
 * and idle I/O class (its CPU and disk go only where nothing else wants them, never on synthesis's
 * path), ended when the VM goes or a handoff begins before it is done. It runs this CLI again
 * (hidden `sandbox launch-digests`). One child at a time per daemon (a FIFO queue): each holds a
 * decoded segment or unit and reads the VM's RAM file, so N synthesized VMs must not mean N at once.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describeError } from '../common/errors';
import { createLogger } from '../common/log';

const log = createLogger('synthesis');

/** Whether handoffs use (and synthesis computes) the kept file: CLOUDLET_LAUNCH_DIGESTS=0 turns both off. */
export function launchDigestsEnabled(): boolean { return process.env.CLOUDLET_LAUNCH_DIGESTS !== '0'; }

/** Launch overlays larger than this are not precomputed (the handoff decodes round 0 as before). */
export const DEFAULT_LAUNCH_DIGESTS_MAX_BYTES = 512 * 1024 ** 2;

/** CLOUDLET_LAUNCH_DIGESTS_MAX_BYTES (a positive integer) or 512 MiB. */
export function launchDigestsMaxBytes(): number {
  const v = Number(process.env.CLOUDLET_LAUNCH_DIGESTS_MAX_BYTES);
  return Number.isSafeInteger(v) && v > 0 ? v : DEFAULT_LAUNCH_DIGESTS_MAX_BYTES;
}

/** What the child process needs to compute a VM's launch digests (JSON on its command line). */
export interface LaunchDigestsJob {
  launchOverlay: string;
  launchOverlayId: string;
  out: string;
  baseId: string;
  base: { ram: string; disk: string; ramDigests: string; diskDigests: string };
  ramBytes: number;
  /** The VM's RAM file, read once afterwards into the page cache (launchDigests.ts warmPageCache). */
  warmRam?: string;
  /** The daemon's pid: the child stops when its parent is no longer that process (the daemon died). */
  parentPid?: number;
}

/** Whether the job also reads the VM's RAM file into the page cache (CLOUDLET_LAUNCH_WARM_RAM=0: not). */
export function warmRamEnabled(): boolean { return process.env.CLOUDLET_LAUNCH_WARM_RAM !== '0'; }

/** Starts one child for a job (the real one: launchDigestsChild). */
export type SpawnLaunchDigests = (vmId: string, job: LaunchDigestsJob) => ChildProcess;

/**
 * The jobs of one daemon: one child at a time, the others wait in order. A job leaves the queue
 * when its VM goes or is handed off (cancel); the running one is ended with SIGTERM.
 */
export class LaunchDigestsQueue {
  private readonly waiting: Array<{ vmId: string; job: LaunchDigestsJob }> = [];
  private current?: { out: string; child: ChildProcess };

  constructor(private readonly spawnChild: SpawnLaunchDigests) {}

  add(vmId: string, job: LaunchDigestsJob): void {
    if (this.has(job.out)) return;
    this.waiting.push({ vmId, job });
    this.next();
  }

  /** Removes a waiting job or ends the running one for `out`; false if there was none. */
  cancel(out: string): boolean {
    const k = this.waiting.findIndex((w) => w.job.out === out);
    if (k >= 0) { this.waiting.splice(k, 1); return true; }
    if (this.current?.out !== out) return false;
    const { child } = this.current;
    this.current = undefined;
    child.kill('SIGTERM');
    this.next();
    return true;
  }

  /** Whether a job for `out` waits or runs. */
  has(out: string): boolean { return this.current?.out === out || this.waiting.some((w) => w.job.out === out); }

  /** The running child's VM folder output, if any (tests, logs). */
  running(): string | undefined { return this.current?.out; }

  /** Ends the running child and forgets the waiting ones (the daemon exits). */
  stopAll(): void {
    this.waiting.length = 0;
    const c = this.current;
    this.current = undefined;
    try { c?.child.kill('SIGTERM'); } catch { /* already gone */ }
  }

  private next(): void {
    while (!this.current && this.waiting.length) {
      const { vmId, job } = this.waiting.shift()!;
      let child: ChildProcess;
      try { child = this.spawnChild(vmId, job); } catch (e) { log.info(`launch digests of ${vmId} not computed: ${describeError(e)}`); continue; }
      const cur = { out: job.out, child };
      this.current = cur;
      // 'error' (spawn failed) may come without 'exit': either one frees the slot, once.
      const done = () => { if (this.current === cur) { this.current = undefined; this.next(); } };
      child.once('error', done);
      child.once('exit', done);
    }
  }
}

/** Whether `cmd` is an executable file in a PATH folder. */
function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => {
    try { fs.accessSync(path.join(d, cmd), fs.constants.X_OK); return true; } catch { return false; }
  });
}

let ioniceAvailable: boolean | undefined;

/** The real child: this CLI again under `nice -n 19`, inside `ionice -c3` (idle I/O class) where the host has it. */
function launchDigestsChild(script: string): SpawnLaunchDigests {
  return (vmId, job) => {
    const args = [...process.execArgv, script, 'sandbox', 'launch-digests', JSON.stringify(job)];
    ioniceAvailable ??= onPath('ionice');
    const niced = ['nice', '-n', '19', process.execPath, ...args];
    const [cmd, ...rest] = ioniceAvailable ? ['ionice', '-c3', ...niced] : niced;
    const child = spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CLOUDLET_CLI_MAIN: '1' } });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => { if (err.length < 4000) err += d.toString('utf8'); });
    child.on('error', (e) => log.info(`launch digests of ${vmId} not computed: ${describeError(e)}`));
    child.on('exit', (code, sig) => {
      if (code === 0) log.info(`launch digests of ${vmId} kept (${job.out})`);
      else log.info(`launch digests of ${vmId} not kept (${sig ? `ended by ${sig}` : `exit ${code}`}): ${err.trim().slice(0, 500)}; a handoff decodes round 0 itself`);
    });
    return child;
  };
}

/** This process's queue (one per daemon process), made on first use. */
let queue: LaunchDigestsQueue | undefined;

/**
 * Queues the computation of a VM's launch digests (run in a child process, one at a time).
 * Best effort: a failure is logged; a handoff without the file decodes round 0 itself.
 */
export function startLaunchDigests(vmId: string, job: LaunchDigestsJob): void {
  if (!launchDigestsEnabled() || queue?.has(job.out)) return;
  // Only from the cloudlet CLI (bin/cloudlet, dist/cloudlet.js, sandbox/cli/main.ts): a daemon run
  // inside another program (a test runner) computes nothing rather than start that program again.
  const script = process.argv[1];
  if (!script || !/^(cloudlet(\.js)?|main\.[jt]s)$/.test(path.basename(script))) {
    log.info(`launch digests of ${vmId} not computed: this process is not the cloudlet CLI`);
    return;
  }
  // A huge launch overlay is minutes of decoding at nice 19 (and its memory): the handoff decodes it then, if ever.
  let bytes: number;
  try { bytes = fs.statSync(job.launchOverlay).size; } catch (e) { log.info(`launch digests of ${vmId} not computed: ${describeError(e)}`); return; }
  const max = launchDigestsMaxBytes();
  if (bytes > max) {
    log.info(`launch digests of ${vmId} not computed: its launch overlay is ${bytes} bytes, over ${max} (CLOUDLET_LAUNCH_DIGESTS_MAX_BYTES); a handoff decodes round 0 itself`);
    return;
  }
  if (!queue) {
    queue = new LaunchDigestsQueue(launchDigestsChild(script));
    // A daemon that exits ends its child (one killed outright: the child sees its parent gone and stops).
    const q = queue;
    process.once('exit', () => q.stopAll());
  }
  queue.add(vmId, { ...job, parentPid: process.pid });
}

/** Ends or unqueues the computation for the VM folder of `out` (the VM is deleted or handed off). */
export function cancelLaunchDigests(out: string): boolean { return queue?.cancel(out) ?? false; }

/** Whether a computation for `out` is still queued or running in this process. */
export function launchDigestsRunning(out: string): boolean { return queue?.has(out) ?? false; }
