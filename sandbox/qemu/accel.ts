/**
 * Accelerator choice: KVM only when it really runs a guest kernel, else TCG with a warning that
 * says why. /dev/kvm can exist and still be unusable (a paravirtual KVM that hangs stock kernels),
 * so we boot the test guest's kernel under KVM for a few seconds and look for it on the console.
 * The result is cached per host boot (in the OS temp dir) so only the first VM pays for the probe.
 * CLOUDLET_ACCEL=tcg|kvm skips the probe.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectCache } from '../common/paths';
import { createLogger } from '../common/log';

export interface AccelChoice { accel: 'kvm' | 'tcg'; reason: string }

const log = createLogger('accel');
const PROBE_TIMEOUT_MS = 4000;
let memo: Promise<AccelChoice> | undefined;

function hostBootId(): string {
  try { return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { return 'unknown'; }
}

function probeKernel(): string | undefined {
  const k = projectCache('guest', 'current', 'vmlinuz');
  return fs.existsSync(k) ? k : undefined;
}

/** Boots a kernel under KVM; true when it got past early boot within the timeout. */
function probeKvm(qemu: string, kernel: string, cpuModel: string): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const child = spawn(qemu, ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-accel', 'kvm',
      '-cpu', cpuModel, '-m', '128M', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1', '-serial', 'stdio'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let serial = '';
    let done = false;
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => finish(false, `a test kernel did not boot under KVM within ${PROBE_TIMEOUT_MS / 1000} s (${serial.trim() ? `last console line: ${JSON.stringify(serial.trim().split('\n').pop())}` : 'no console output; a paravirtual KVM that cannot run stock kernels?'})`), PROBE_TIMEOUT_MS);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/Freeing unused kernel|Run \/init|Kernel panic|VFS: /.test(out)) finish(true, 'a test kernel booted under KVM');
      if (/failed to (set|initialize)|Could not access KVM|kvm.*error/i.test(out)) finish(false, `QEMU refused KVM: ${out.trim().split('\n').pop()}`);
    };
    child.stdout.on('data', (d: Buffer) => { serial += d.toString(); onData(d); });
    child.stderr.on('data', onData);
    child.on('exit', () => finish(/Freeing unused kernel|Run \/init|Kernel panic|VFS: /.test(out), `QEMU exited: ${out.trim().split('\n').pop() ?? ''}`));
    child.on('error', (e) => finish(false, String(e)));
  });
}

async function decide(qemu: string, cpuModel: string): Promise<AccelChoice> {
  const forced = process.env.CLOUDLET_ACCEL;
  if (forced === 'tcg' || forced === 'kvm') return { accel: forced, reason: `CLOUDLET_ACCEL=${forced}` };
  try { fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK); } catch {
    return { accel: 'tcg', reason: 'no usable /dev/kvm on this host' };
  }
  const cacheFile = path.join(os.tmpdir(), `cloudlet-accel-${process.getuid?.() ?? 0}.json`);
  const key = `${hostBootId()} ${qemu} ${cpuModel}`;
  try {
    const c = JSON.parse(fs.readFileSync(cacheFile, 'utf8')) as AccelChoice & { key: string };
    if (c.key === key) return { accel: c.accel, reason: c.reason };
  } catch { /* no cache yet */ }
  const kernel = probeKernel();
  if (!kernel) return { accel: 'tcg', reason: '/dev/kvm exists but there is no probe kernel to check it with (run `cloudlet guest build`)' };
  const r = await probeKvm(qemu, kernel, cpuModel);
  const choice: AccelChoice = r.ok ? { accel: 'kvm', reason: r.detail } : { accel: 'tcg', reason: `/dev/kvm exists but ${r.detail}` };
  try { fs.writeFileSync(cacheFile, JSON.stringify({ ...choice, key })); } catch { /* cache is optional */ }
  return choice;
}

/** The accelerator to use, decided once per process; warns (stderr) when falling back to TCG. */
export function chooseAccel(qemu: string, cpuModel = 'qemu64'): Promise<AccelChoice> {
  memo ??= decide(qemu, cpuModel).then((c) => {
    if (c.accel === 'tcg' && !c.reason.startsWith('CLOUDLET_ACCEL')) log.warn(`using TCG (slow, no KVM): ${c.reason}`);
    return c;
  });
  return memo;
}
