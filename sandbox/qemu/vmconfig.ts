/**
 * The fixed VM shape of a base and of every sandbox resumed from it, and the QEMU command line
 * built from it. One function builds the arguments for create, resume and cold boot, so the device
 * set is always identical (an incoming migration fails on any difference, even a missing serial).
 */
import { CloudletError } from '../common/errors';
import type { PortForward } from './ports';

export type { PortForward } from './ports';

export interface VmConfig {
  machine: string;                 // concrete type, e.g. pc-q35-7.2 (an alias could change meaning)
  cpuModel: string;                // e.g. qemu64: fixed per base, checked before resume
  ramBytes: number;                // multiple of 4096
  vcpus: number;
  nic: { model: 'virtio-net-pci'; mac: string };
  /** Present when the guest boots from a kernel + initrd given to QEMU (the bundle then holds both). */
  kernel?: { append: string };
}

export interface VmFiles {
  disk: string;
  diskFormat: 'raw' | 'qcow2';
  ramFile: string;
  kernel?: string;
  initrd?: string;
  qmpSocket: string;
  consoleSocket: string;
  consoleLog: string;
  agentSocket: string;
  /** Where the device-state stream goes (qemu/deviceState.ts); not a QEMU argument. */
  migrateSocket: string;
  pidFile: string;
  /** QEMU's stdout and stderr; not a QEMU argument. */
  qemuLog: string;
}


export interface QemuArgsOptions {
  name: string;                  // -name, also how a process is recognised when adopting
  accel: 'kvm' | 'tcg';
  incoming?: boolean;            // -incoming defer (resume from a device state)
  paused?: boolean;              // -S
  ports?: PortForward[];
  /** SMBIOS system serial number (a cloud-init NoCloud seed address); only at base creation. */
  smbiosSerial?: string;
  /** The qcow2 disk has a backing file (every sandbox layer: the base's disk.raw); see keepPageCache. */
  diskBacked?: boolean;
}

/**
 * drop-cache=off for the disk's files (the image and, for a layer, its backing file). By default
 * QEMU's file driver writes back and drops the host page cache of every image file when an incoming
 * migration activates it (made for shared storage another host wrote). Every image here was
 * written on this host, through its page cache (the synthesis apply, prepareFiles, the handoff's
 * rounds; never O_DIRECT), so that cache is current: dropping it only cost the launch time (the
 * write-back of the disk layer just written, inside the guest's pause: 25 ms with it off vs 336 ms
 * measured on the realistic launch at load 7) and evicted the base disk's pages every sandbox of
 * that base reads. Guest flushes still reach the disk (cache=writeback honours them).
 * `backing.file.*` only when the image has a backing file (QEMU refuses it otherwise).
 */
export function keepPageCache(backed: boolean): string {
  return backed ? 'file.drop-cache=off,backing.file.drop-cache=off' : 'file.drop-cache=off';
}

export const AGENT_PORT_NAME = 'org.cloudlet.agent';

/** A value spliced into a QEMU option list: a ',' or '=' in it would add options of the caller's choosing. */
function optionValue(what: string, v: unknown): string {
  if (typeof v !== 'string' || !v || /[,=\s]/.test(v)) throw new CloudletError('BadInput', `VM config ${what} ${JSON.stringify(v)} is not a plain QEMU option value (no ',', '=' or spaces)`);
  return v;
}

export interface CpuModel { model: string; flags: string[] }

/**
 * A CPU model as QEMU's -cpu takes it: a named model from `qemu-system-x86_64 -cpu help`, then
 * optional feature flags, `+name` to add one and `-name` to remove one (e.g. qemu64,+ssse3,-svm).
 * Anything else (a '=' property, a second model, spaces) is refused: the string reaches QEMU's
 * option parser. Whether this host knows the model and flags is checked by checkHostCanRun.
 */
export function parseCpuModel(text: unknown): CpuModel {
  if (typeof text !== 'string' || !text || text.length > 1024) throw new CloudletError('BadInput', `CPU model ${JSON.stringify(text)} is not a CPU model name`);
  const [model, ...flags] = text.split(',');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(model)) {
    throw new CloudletError('BadInput', `CPU model ${JSON.stringify(model)} is not a model name`, { hint: 'a name from `qemu-system-x86_64 -cpu help`, e.g. qemu64 or Haswell-v4' });
  }
  const seen = new Map<string, string>();
  for (const f of flags) {
    if (!/^[+-][a-z0-9][a-z0-9_.-]{0,63}$/.test(f)) {
      throw new CloudletError('BadInput', `${JSON.stringify(f)} in CPU model ${JSON.stringify(text)} is not a feature flag`, { hint: 'write +name to add a CPU feature and -name to remove one, e.g. qemu64,+ssse3,+sse4.2' });
    }
    const name = f.slice(1);
    const prev = seen.get(name);
    if (prev && prev !== f[0]) throw new CloudletError('BadInput', `CPU model ${JSON.stringify(text)} both adds and removes ${name}`);
    seen.set(name, f[0]);
  }
  return { model, flags: [...new Set(flags)] };
}

export function formatCpuModel(c: CpuModel): string { return [c.model, ...c.flags].join(','); }

export function buildQemuArgs(cfg: VmConfig, f: VmFiles, o: QemuArgsOptions): string[] {
  const machine = optionValue('machine', cfg.machine), cpuModel = formatCpuModel(parseCpuModel(cfg.cpuModel));
  const nicModel = optionValue('nic.model', cfg.nic?.model), mac = optionValue('nic.mac', cfg.nic?.mac);
  if (!Number.isInteger(cfg.vcpus) || cfg.vcpus < 1) throw new CloudletError('BadInput', `VM config vcpus ${JSON.stringify(cfg.vcpus)} is not a positive integer`);
  if (!Number.isInteger(cfg.ramBytes) || cfg.ramBytes <= 0) throw new CloudletError('BadInput', `VM config ramBytes ${JSON.stringify(cfg.ramBytes)} is not a positive integer`);
  const mib = cfg.ramBytes / (1024 * 1024);
  const hostfwd = (o.ports ?? []).map((p) => `,hostfwd=tcp:127.0.0.1:${p.host}-:${p.guest}`).join('');
  const args = [
    '-name', o.name,
    '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
    '-machine', `${machine},memory-backend=mem`,
    '-accel', o.accel,
    '-cpu', cpuModel,
    '-smp', String(cfg.vcpus),
    '-m', `${mib}M`,
    '-object', `memory-backend-file,id=mem,size=${mib}M,mem-path=${f.ramFile},share=on`,
  ];
  if (cfg.kernel) {
    if (!f.kernel || !f.initrd) throw new Error('a kernel-booted VM config needs its kernel and initrd files');
    args.push('-kernel', f.kernel, '-initrd', f.initrd, '-append', cfg.kernel.append);
  }
  args.push(
    '-drive', `file=${f.disk},format=${f.diskFormat},if=none,id=disk0,cache=writeback,discard=unmap,${keepPageCache(f.diskFormat === 'qcow2' && !!o.diskBacked)}`,
    '-device', 'virtio-blk-pci,drive=disk0,id=vda',
    '-netdev', `user,id=net0${hostfwd}`,
    '-device', `${nicModel},netdev=net0,mac=${mac},id=nic0`,
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,id=agent0,path=${f.agentSocket},server=on,wait=off`,
    '-device', `virtserialport,bus=vser0.0,chardev=agent0,name=${AGENT_PORT_NAME},id=agentport`,
    '-chardev', `socket,id=con0,path=${f.consoleSocket},server=on,wait=off,logfile=${f.consoleLog},logappend=on`,
    '-serial', 'chardev:con0',
    '-qmp', `unix:${f.qmpSocket},server=on,wait=off`,
    '-pidfile', f.pidFile,
  );
  if (o.smbiosSerial !== undefined) {
    // Firmware tables only, read by the guest at boot: no device state, so resume need not repeat it.
    if (!/^[A-Za-z0-9;:/.=_-]{1,200}$/.test(o.smbiosSerial)) throw new CloudletError('BadInput', `SMBIOS serial ${JSON.stringify(o.smbiosSerial)} has characters QEMU would parse`);
    args.push('-smbios', `type=1,serial=${o.smbiosSerial}`);
  }
  if (o.paused) args.push('-S');
  if (o.incoming) args.push('-incoming', 'defer');
  return args;
}

/** A locally administered unicast MAC derived from a seed (stable per base). */
export function macFromSeed(seed: string): string {
  let h = 0x811c9dc5;
  for (const ch of seed) { h ^= ch.charCodeAt(0); h = Math.imul(h, 0x01000193) >>> 0; }
  const b = [0x52, 0x54, 0x00, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
