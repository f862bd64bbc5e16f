/**
 * What this host's QEMU can do: which binary, its version, CPU models and machine types.
 * Read once per binary and cached in memory; used to refuse a base before QEMU starts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { chooseAccel, type AccelChoice } from './accel';
import { missingTool, run } from './run';
import { parseCpuModel } from './vmconfig';

/** Finds a program: an explicit override (env var) first, else PATH. */
function findProgram(name: string, override?: string): string {
  if (override) {
    if (fs.existsSync(override)) return override;
    throw missingTool(name, `${override} does not exist`);
  }
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const p = path.join(dir, name);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  throw missingTool(name, 'not found on PATH');
}

/** qemu-system-x86_64 (CLOUDLET_QEMU overrides). Missing -> MissingTool with the apt command. */
export function qemuBinary(): string { return findProgram('qemu-system-x86_64', process.env.CLOUDLET_QEMU); }
/** qemu-img (CLOUDLET_QEMU_IMG overrides). */
export function qemuImgBinary(): string { return findProgram('qemu-img', process.env.CLOUDLET_QEMU_IMG); }

export interface HostQemu {
  binary: string;
  version: string;                    // e.g. 7.2.22
  cpuModels: Set<string>;
  cpuFlags: Set<string>;              // "Recognized CPUID flags" of -cpu help
  machines: Map<string, string>;      // name or alias -> concrete machine type (q35 -> pc-q35-7.2)
}

const cache = new Map<string, HostQemu>();

export async function hostQemu(binary = qemuBinary()): Promise<HostQemu> {
  const hit = cache.get(binary);
  if (hit) return hit;
  const [ver, cpus, machines] = await Promise.all([
    run(binary, ['--version']),
    run(binary, ['-cpu', 'help']),
    run(binary, ['-machine', 'help']),
  ]);
  const version = /version\s+([0-9][0-9.]*)/.exec(ver.stdout)?.[1];
  if (!version) throw new CloudletError('Internal', `cannot read the QEMU version from: ${ver.stdout.trim()}`);
  const cpuModels = new Set<string>();
  const cpuFlags = new Set<string>();
  let inFlags = false;
  for (const line of cpus.stdout.split('\n')) {
    const m = /^x86\s+(\S+)/.exec(line);
    if (m) cpuModels.add(m[1]);
    if (/^Recognized CPUID flags:/.test(line)) inFlags = true;
    else if (inFlags && /^\s+\S/.test(line)) for (const f of line.trim().split(/\s+/)) cpuFlags.add(f);
    else if (inFlags) inFlags = false;
  }
  const map = new Map<string, string>();
  for (const line of machines.stdout.split('\n')) {
    const m = /^(\S+)\s+.*?(?:\(alias of (\S+)\))?$/.exec(line.trim());
    if (!m || line.startsWith('Supported machines')) continue;
    map.set(m[1], m[2] ?? m[1]);
  }
  const h: HostQemu = { binary, version, cpuModels, cpuFlags, machines: map };
  cache.set(binary, h);
  return h;
}

/** Concrete machine type for a name or alias, e.g. q35 -> pc-q35-7.2 (kept in the manifest). */
export function resolveMachine(host: HostQemu, name: string): string {
  const m = host.machines.get(name);
  if (!m) throw new CloudletError('Mismatch', `this QEMU (${host.version}) has no machine type '${name}'`);
  return m;
}

/**
 * Refuses a VM config this host cannot run exactly: an unknown CPU model or machine type would
 * crash or reboot the guest instead of resuming it, so we stop before QEMU starts.
 */
export function checkHostCanRun(host: HostQemu, cfg: { cpuModel: string; machine: string }, accel: string, what: string): void {
  const { model, flags } = parseCpuModel(cfg.cpuModel);
  if (!host.cpuModels.has(model)) {
    throw new CloudletError('Mismatch', `${what} needs CPU model '${model}', which this host's QEMU ${host.version} cannot provide`, {
      hint: `the base fixes its CPU model; resume it on a host whose 'qemu-system-x86_64 -cpu help' lists ${model}, or re-create the base here`,
    });
  }
  const unknown = flags.map((f) => f.slice(1)).filter((f) => host.cpuFlags.size && !host.cpuFlags.has(f));
  if (unknown.length) {
    throw new CloudletError('Mismatch', `${what} needs CPU feature${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}, which this host's QEMU ${host.version} does not know`, {
      hint: "the flags QEMU knows are listed under 'Recognized CPUID flags' in 'qemu-system-x86_64 -cpu help'",
    });
  }
  if ((model === 'host' || model === 'max') && accel !== 'kvm') {
    throw new CloudletError('Mismatch', `${what} needs CPU model '${model}' under KVM, but this host runs QEMU with ${accel}`, {
      hint: 'bases should use a named CPU model (default qemu64) so they resume anywhere',
    });
  }
  if (!host.machines.has(cfg.machine)) {
    throw new CloudletError('Mismatch', `${what} needs machine type '${cfg.machine}', which this host's QEMU ${host.version} does not have`, {
      hint: 'resume it with the QEMU version that created it',
    });
  }
}

/** The host check every VM start makes before anything is claimed: QEMU, accelerator, CPU model and machine. */
export async function checkHostFor(cfg: { cpuModel: string; machine: string }, what: string, binary = qemuBinary()): Promise<{ host: HostQemu; accel: AccelChoice }> {
  const host = await hostQemu(binary);
  const accel = await chooseAccel(binary, cfg.cpuModel);
  checkHostCanRun(host, cfg, accel.accel, what);
  return { host, accel };
}
