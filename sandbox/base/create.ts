/**
 * `base create`: boot a bootable image, wait until it is ready, pause, save the device state with
 * x-ignore-shared, and write the bundle (see manifest.ts). Everything is built in tmp/ and renamed
 * into bases/<baseId>/ only when complete.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { createLogger } from '../common/log';
import type { StorePaths } from '../common/paths';
import { noProgress, type ProgressSink } from '../common/progress';
import { chooseAccel } from '../qemu/accel';
import { AgentClient } from '../qemu/agentClient';
import { cloneFile } from '../qemu/files';
import { checkHostCanRun, hostQemu, qemuBinary, resolveMachine } from '../qemu/host';
import { saveDeviceStateToFile } from '../qemu/deviceState';
import { logTail, startVm, stopVm, vmFilesIn, type RunningVm } from '../qemu/vm';
import { macFromSeed, type VmConfig } from '../qemu/vmconfig';
import { NoCloudServer, type NoCloudOptions } from '../guest/noCloud';
import { hashFile } from './digests';
import { BASE_FORMAT, BASE_FORMAT_VERSION, computeBaseId, type BaseManifest, type BundleFileName, type FileEntry } from './manifest';
import { writeVerifiedStamp } from './verify';
import { envNumber } from '../common/env';

const log = createLogger('base');

export interface CreateBaseOptions {
  name: string;
  disk: string;                    // raw disk image; copied into the bundle (the source is not changed)
  /** The disk is a temporary file made for this base (a converted image): moved in, not copied. */
  moveDisk?: boolean;
  kernel?: string;                 // boot with -kernel/-initrd/-append (both kept in the bundle)
  initrd?: string;
  append?: string;
  ramMiB?: number;                 // default 256
  vcpus?: number;                  // default 1
  cpuModel?: string;               // default qemu64 (runs under TCG and KVM alike)
  machine?: string;                // default q35 (stored resolved, e.g. pc-q35-7.2)
  mac?: string;                    // default derived from the name
  ports?: number[];                // guest TCP ports to forward on resume
  /** Ready when the console printed the marker and/or the guest agent answers. */
  readiness?: { consoleMarker?: string; agent?: boolean; timeoutMs?: number };
  /** Firmware-booted images: a cloud-init NoCloud seed that installs the agent (see guest/noCloud.ts). */
  noCloud?: NoCloudOptions;
  /** Where the base came from (recorded in the manifest for people; not part of the base ID). */
  origin?: Record<string, unknown>;
  onProgress?: ProgressSink;
  signal?: AbortSignal;
}

/** Bump when base creation changes what the saved guest is (cached test bases include it in their key). */
export const CREATE_RECIPE = 3;

/**
 * Waits, in the guest, for cloud-init and systemd to finish booting (each only if present). On a
 * systemd guest it then writes dirty pages out and waits until the guest is quiet: busy at most
 * 10 % of a 2 s window, by the guest's own CPU accounting (which a busy host does not skew), for at
 * most a minute. "running" comes before the console's login shell and some units' work ends, and
 * a base saved mid-work does that work again after every resume, slowing its first commands.
 */
const SETTLE = [
  'if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1; cloud-init status 2>/dev/null; fi',
  'if [ -d /run/systemd/system ]; then systemctl is-system-running --wait >/dev/null 2>&1; sync',
  '  n=0; while [ $n -lt 30 ]; do',
  '    read -r _ u ni sy id io ir so _ </proc/stat; sleep 2; read -r _ u2 ni2 sy2 id2 io2 ir2 so2 _ </proc/stat',
  '    busy=$((u2 + ni2 + sy2 + ir2 + so2 - u - ni - sy - ir - so)); all=$((busy + id2 + io2 - id - io))',
  '    [ $((busy * 10)) -le "$all" ] && break; n=$((n + 1))',
  '  done',
  'fi',
  'true',
].join('\n');

/** A check polled while the guest boots: an error it returns ends the wait at once. */
type ReadyWatch = (console: string) => CloudletError | undefined;

async function waitReady(vm: RunningVm, agent: AgentClient | undefined, r: { consoleMarker?: string; timeoutMs: number; watch?: ReadyWatch }, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + r.timeoutMs;
  let exited = false;
  void vm.exited.then(() => { exited = true; }, () => { exited = true; });
  let agentOk = !agent;
  let agentErr: unknown;
  agent?.ping(r.timeoutMs).then(() => { agentOk = true; }, (e) => { agentErr = e; });
  const consoleNow = () => { try { return fs.readFileSync(vm.files.consoleLog, 'utf8'); } catch { return ''; } };
  for (;;) {
    throwIfCancelled(signal);
    const text = consoleNow();
    const markerOk = !r.consoleMarker || text.includes(r.consoleMarker);
    if (markerOk && agentOk) return;
    if (exited) throw new CloudletError('Internal', `the guest stopped before it was ready. Last console lines:\n${logTail(vm.files.consoleLog)}`);
    const refused = r.watch?.(text);
    if (refused) throw refused;
    if (Date.now() > deadline || agentErr) {
      const what = !markerOk ? `did not print "${r.consoleMarker}"` : 'guest agent did not answer';
      throw new CloudletError('Timeout', `the guest ${what} within ${r.timeoutMs / 1000} s. Last console lines:\n${logTail(vm.files.consoleLog)}`, {
        cause: agentErr, hint: 'a guest that never becomes ready: check the console lines above; --timeout gives a slow guest longer',
      });
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Gives up early on an image that came up to a login prompt without asking for its seed: no cloud-init. */
function noCloudWatch(seed: NoCloudServer, agent: boolean, consoleLog: string): ReadyWatch {
  // A guest that already has the agent answers soon after its login prompt; give it that time.
  const graceMs = envNumber('CLOUDLET_SEED_GRACE_MS', 45_000, 1);
  let promptAt = 0;
  return (text) => {
    if (seed.seeded || !agent) return undefined;
    if (!promptAt && /login:\s*$/m.test(text)) promptAt = Date.now();
    if (promptAt && Date.now() - promptAt > graceMs) {
      return new CloudletError('BadInput', `the image booted to a login prompt but has neither cloud-init (it never fetched its NoCloud seed) nor the cloudlet guest agent. Last console lines:\n${logTail(consoleLog)}`, {
        hint: 'use an image with cloud-init (Debian and Ubuntu cloud images have it), install the agent in the image (docs/guests.md), or create the base with --no-agent --ready-marker TEXT (a line its console prints when it is ready)',
      });
    }
    return undefined;
  };
}

/** Refuses a base whose CPU flags QEMU had to drop (it warns and runs without them, e.g. under TCG). */
function droppedCpuFlags(cpuModel: string, qemuLog: string): string[] {
  let text = '';
  try { text = fs.readFileSync(qemuLog, 'utf8'); } catch { return []; }
  const added = cpuModel.split(',').slice(1).filter((f) => f.startsWith('+')).map((f) => f.slice(1));
  return added.filter((f) => new RegExp(`doesn't support requested feature: \\S+\\.${f.replace(/[.]/g, '\\.')} \\[`).test(text));
}

function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Base creations interrupted so hard they could not clean up (killed): their QEMU and folder. */
function sweepInterrupted(store: StorePaths): void {
  if (!fs.existsSync(store.tmp)) return;
  for (const f of fs.readdirSync(store.tmp)) {
    const m = /^base-(\d+)-/.exec(f);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const dir = path.join(store.tmp, f);
    try {
      const qpid = Number(fs.readFileSync(path.join(dir, 'qemu.pid'), 'utf8'));
      const cmd = fs.readFileSync(`/proc/${qpid}/cmdline`, 'utf8');
      if (cmd.includes(dir)) process.kill(qpid, 'SIGKILL');
    } catch { /* no QEMU left */ }
    fs.rmSync(dir, { recursive: true, force: true });
    log.info(`removed ${dir}, left by an interrupted base create (pid ${pid})`);
  }
}

async function guestFacts(agent: AgentClient): Promise<BaseManifest['guest']> {
  const r = await agent.exec('cat /proc/sys/kernel/random/boot_id; cut -d" " -f1 /proc/uptime; cat /run/counter 2>/dev/null || echo', { timeoutMs: 20_000 });
  const [bootId, uptime, counter] = r.stdout.split('\n');
  return { bootId: bootId?.trim() || undefined, uptime: uptime ? Number(uptime) : undefined, counter: counter?.trim() ? Number(counter) : undefined };
}

export async function createBase(store: StorePaths, o: CreateBaseOptions): Promise<string> {
  const progress = o.onProgress ?? noProgress;
  if (!fs.existsSync(o.disk)) throw new CloudletError('BadInput', `disk image ${o.disk} does not exist`);
  if ((o.kernel && !o.initrd) || (!o.kernel && o.initrd)) throw new CloudletError('BadInput', 'give both --kernel and --initrd, or neither');
  const binary = qemuBinary();
  const host = await hostQemu(binary);
  const ramMiB = o.ramMiB ?? 256;
  const cfg: VmConfig = {
    machine: resolveMachine(host, o.machine ?? 'q35'),
    cpuModel: o.cpuModel ?? 'qemu64',
    ramBytes: ramMiB * 1024 * 1024,
    vcpus: o.vcpus ?? 1,
    nic: { model: 'virtio-net-pci', mac: o.mac ?? macFromSeed(o.name) },
    kernel: o.kernel ? { append: o.append ?? 'console=ttyS0' } : undefined,
  };
  const { accel } = await chooseAccel(binary, cfg.cpuModel);
  checkHostCanRun(host, cfg, accel, `base ${o.name}`);
  if (o.noCloud && o.kernel) throw new CloudletError('BadInput', 'a NoCloud seed is for images that boot through their own boot loader, not with --kernel');
  const readiness = { consoleMarker: o.readiness?.consoleMarker, agent: o.readiness?.agent ?? true, timeoutMs: o.readiness?.timeoutMs ?? 300_000 };
  if (!readiness.agent && !readiness.consoleMarker) {
    throw new CloudletError('BadInput', 'without the guest agent, say when the guest is ready with a console marker', { hint: '--no-agent --ready-marker TEXT' });
  }
  const seed = o.noCloud ? new NoCloudServer({ ...o.noCloud, agent: o.noCloud.agent ?? readiness.agent }) : undefined;

  fs.mkdirSync(store.tmp, { recursive: true });
  sweepInterrupted(store);
  const dir = fs.mkdtempSync(path.join(store.tmp, `base-${process.pid}-`));
  let vm: RunningVm | undefined;
  let agent: AgentClient | undefined;
  try {
    if (o.moveDisk) fs.renameSync(o.disk, path.join(dir, 'disk.raw'));
    else {
      progress({ phase: 'copy-disk', message: `copying ${o.disk}` });
      await cloneFile(o.disk, path.join(dir, 'disk.raw'));
    }
    if (o.kernel && o.initrd) {
      fs.copyFileSync(o.kernel, path.join(dir, 'kernel'));
      fs.copyFileSync(o.initrd, path.join(dir, 'initrd'));
    }
    const ram = path.join(dir, 'ram.raw');
    fs.writeFileSync(ram, '');
    fs.truncateSync(ram, cfg.ramBytes); // sparse, page-aligned: QEMU maps it as guest RAM
    const files = vmFilesIn(dir, { path: path.join(dir, 'disk.raw'), format: 'raw' }, ram,
      o.kernel ? { kernel: path.join(dir, 'kernel'), initrd: path.join(dir, 'initrd') } : undefined);
    if (seed) await seed.start();
    progress({ phase: 'boot', message: `booting ${o.name} (${accel}${o.kernel ? '' : ', firmware and the image\'s boot loader'}${seed ? ', cloud-init seed offered' : ''})` });
    const t0 = Date.now();
    vm = await startVm({ binary, name: `cloudlet-base-create-${path.basename(dir)}`, cfg, files, accel, smbiosSerial: seed?.smbiosSerial });
    const dropped = droppedCpuFlags(cfg.cpuModel, files.qemuLog);
    if (dropped.length) {
      throw new CloudletError('Mismatch', `this host cannot give the guest CPU feature${dropped.length > 1 ? 's' : ''} ${dropped.join(', ')} under ${accel}: the base would not have the CPU it names`, { hint: 'leave those flags out, or create the base on a host with KVM and such a CPU' });
    }
    agent = readiness.agent ? new AgentClient(files.agentSocket) : undefined;
    await waitReady(vm, agent, { ...readiness, watch: seed ? noCloudWatch(seed, readiness.agent, files.consoleLog) : undefined }, o.signal);
    if (agent) {
      // The agent answers before the guest has finished booting (cloud-init's last stage starts it on
      // cloud images; systemd may still be starting units). A base saved then would go on booting in
      // every VM made from it: slower first commands, larger overlays. Let the boot finish first.
      progress({ phase: 'settle', message: 'agent answers; waiting for the boot to finish (systemd, cloud-init)' });
      const left = Math.max(30_000, readiness.timeoutMs - (Date.now() - t0));
      const r = await agent.exec(SETTLE, { timeoutMs: left });
      if (/status: error/.test(r.stdout)) log.warn(`cloud-init reported errors in base ${o.name}: ${r.stdout.trim()}`);
    }
    seed?.close();
    const readyAfterMs = Date.now() - t0;
    const guest = agent ? await guestFacts(agent) : undefined;
    progress({ phase: 'save', message: 'pausing and saving device state' });
    // The agent stays connected while saving: a resume that connects before loading the state
    // then finds the port as the guest left it, and the agent answers without a reconnect poll.
    const saved = await saveDeviceStateToFile(vm.qmp, path.join(dir, 'state.bin'), { socket: files.migrateSocket });
    await stopVm(vm);
    agent?.close();
    vm = undefined;
    for (const f of ['qmp.sock', 'console.sock', 'agent.sock', 'qemu.pid']) fs.rmSync(path.join(dir, f), { force: true });

    progress({ phase: 'digests', message: 'hashing disk and RAM in 4 KiB chunks' });
    const entries: Partial<Record<BundleFileName, FileEntry>> = {};
    for (const [name, out] of [['disk.raw', 'disk.digests'], ['ram.raw', 'ram.digests']] as const) {
      const d = await hashFile(path.join(dir, name), { chunks: true, onProgress: (done, total) => progress({ phase: 'digests', message: name, done, total }) });
      fs.writeFileSync(path.join(dir, out), d.chunks);
      entries[name] = { bytes: d.bytes, sha256: d.sha256 };
      entries[out] = { bytes: d.chunks.length, sha256: crypto.createHash('sha256').update(d.chunks).digest('hex') };
    }
    entries['state.bin'] = { bytes: saved.bytes, sha256: saved.sha256 };
    for (const name of ['kernel', 'initrd'] as const) {
      if (fs.existsSync(path.join(dir, name))) {
        const d = await hashFile(path.join(dir, name));
        entries[name] = { bytes: d.bytes, sha256: d.sha256 };
      }
    }
    const baseId = computeBaseId(entries['disk.digests']!.sha256, entries['ram.digests']!.sha256);
    const manifest: BaseManifest = {
      format: BASE_FORMAT, formatVersion: BASE_FORMAT_VERSION, baseId, name: o.name,
      createdAt: new Date().toISOString(), vm: cfg, qemu: { version: host.version, accel }, chunkSize: 4096,
      files: entries, ports: o.ports ?? [], readiness: { ...readiness, readyAfterMs }, guest,
      ...(o.origin ? { origin: o.origin } : {}),
    };
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    for (const f of fs.readdirSync(dir)) if (f.endsWith('.log') || f === 'migrate.sock') fs.rmSync(path.join(dir, f), { force: true });
    writeVerifiedStamp(dir, manifest);
    fs.mkdirSync(store.bases, { recursive: true });
    const final = path.join(store.bases, baseId);
    if (fs.existsSync(final)) throw new CloudletError('Conflict', `base ${baseId} already exists`);
    fs.renameSync(dir, final);
    log.info(`base ${o.name} created: ${baseId} (ready after ${(readyAfterMs / 1000).toFixed(1)} s, state ${saved.bytes} bytes)`);
    progress({ phase: 'done', message: baseId });
    return baseId;
  } catch (e) {
    seed?.close();
    agent?.close();
    if (vm) await stopVm(vm).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    if (o.moveDisk) fs.rmSync(o.disk, { force: true });
    throw e;
  }
}
