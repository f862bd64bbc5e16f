/**
 * The child process that computes a synthesized VM's launch digests (handoff/launchDigests.ts: what
 * the destination holds once its handoff's round 0 is applied), started once the VM runs, at nice 19
 * (its CPU goes only where nothing else wants it, never on synthesis's path), ended when the VM goes
 * or a handoff begins before it is done. It runs this CLI again (hidden `sandbox launch-digests`).
 */
import { spawn, type ChildProcess } from 'child_process';
import * as path from 'path';
import { describeError } from '../common/errors';
import { createLogger } from '../common/log';

const log = createLogger('synthesis');

/** Whether handoffs use (and synthesis computes) the kept file: CLOUDLET_LAUNCH_DIGESTS=0 turns both off. */
export function launchDigestsEnabled(): boolean { return process.env.CLOUDLET_LAUNCH_DIGESTS !== '0'; }

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
}

/** Whether the job also reads the VM's RAM file into the page cache (CLOUDLET_LAUNCH_WARM_RAM=0: not). */
export function warmRamEnabled(): boolean { return process.env.CLOUDLET_LAUNCH_WARM_RAM !== '0'; }

/** Running computations by VM folder (one per daemon process). */
const running = new Map<string, ChildProcess>();

/**
 * Starts the computation of a VM's launch digests in a child process at nice 19 (this CLI again,
 * hidden command `sandbox launch-digests`): its CPU goes only where nothing else wants it.
 * Best effort: a failure is logged; a handoff without the file decodes round 0 itself.
 */
export function startLaunchDigests(vmId: string, job: LaunchDigestsJob): void {
  if (!launchDigestsEnabled() || running.has(job.out)) return;
  // Only from the cloudlet CLI (bin/cloudlet, dist/cloudlet.js, sandbox/cli/main.ts): a daemon run
  // inside another program (a test runner) computes nothing rather than start that program again.
  const script = process.argv[1];
  if (!script || !/^(cloudlet(\.js)?|main\.[jt]s)$/.test(path.basename(script))) {
    log.info(`launch digests of ${vmId} not computed: this process is not the cloudlet CLI`);
    return;
  }
  const args = [...process.execArgv, script, 'sandbox', 'launch-digests', JSON.stringify(job)];
  let child: ChildProcess;
  try {
    child = spawn('nice', ['-n', '19', process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CLOUDLET_CLI_MAIN: '1' } });
  } catch (e) { log.info(`launch digests of ${vmId} not computed: ${describeError(e)}`); return; }
  running.set(job.out, child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { if (err.length < 4000) err += d.toString('utf8'); });
  child.on('error', (e) => log.info(`launch digests of ${vmId} not computed: ${describeError(e)}`));
  child.on('exit', (code, sig) => {
    if (running.get(job.out) === child) running.delete(job.out);
    if (code === 0) log.info(`launch digests of ${vmId} kept (${job.out})`);
    else log.info(`launch digests of ${vmId} not kept (${sig ? `ended by ${sig}` : `exit ${code}`}): ${err.trim().slice(0, 500)}; a handoff decodes round 0 itself`);
  });
}

/** Ends a running computation for the VM folder of `out` (the VM is deleted or handed off). */
export function cancelLaunchDigests(out: string): boolean {
  const c = running.get(out);
  if (!c) return false;
  running.delete(out);
  c.kill('SIGTERM');
  return true;
}

/** Whether a computation for `out` is still running in this process. */
export function launchDigestsRunning(out: string): boolean { return running.has(out); }
