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
import { hashFile } from './digests';
import { BASE_FORMAT, BASE_FORMAT_VERSION, computeBaseId, type BaseManifest, type BundleFileName, type FileEntry } from './manifest';
import { writeVerifiedStamp } from './verify';

const log = createLogger('base');

export interface CreateBaseOptions {
  name: string;
  disk: string;                    // raw disk image; copied into the bundle (the source is not changed)
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
  onProgress?: ProgressSink;
  signal?: AbortSignal;
}

async function waitReady(vm: RunningVm, agent: AgentClient | undefined, r: { consoleMarker?: string; timeoutMs: number }, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + r.timeoutMs;
  let exited = false;
  void vm.exited.then(() => { exited = true; }, () => { exited = true; });
  if (r.consoleMarker) {
    for (;;) {
      throwIfCancelled(signal);
      if (exited) throw new CloudletError('Internal', `the guest stopped before it was ready. Console:\n${logTail(vm.files.consoleLog)}`);
      let text = '';
      try { text = fs.readFileSync(vm.files.consoleLog, 'utf8'); } catch { /* not yet */ }
      if (text.includes(r.consoleMarker)) break;
      if (Date.now() > deadline) {
        throw new CloudletError('Timeout', `the guest did not print "${r.consoleMarker}" within ${r.timeoutMs / 1000} s. Console:\n${logTail(vm.files.consoleLog)}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  if (agent) {
    try { await agent.ping(Math.max(1000, deadline - Date.now())); } catch (e) {
      throw new CloudletError('Timeout', `the guest agent did not answer within ${r.timeoutMs / 1000} s. Console:\n${logTail(vm.files.consoleLog)}`, { cause: e });
    }
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
  const readiness = { consoleMarker: o.readiness?.consoleMarker, agent: o.readiness?.agent ?? true, timeoutMs: o.readiness?.timeoutMs ?? 300_000 };

  fs.mkdirSync(store.tmp, { recursive: true });
  const dir = fs.mkdtempSync(path.join(store.tmp, 'base-'));
  let vm: RunningVm | undefined;
  let agent: AgentClient | undefined;
  try {
    progress({ phase: 'copy-disk', message: `copying ${o.disk}` });
    await cloneFile(o.disk, path.join(dir, 'disk.raw'));
    if (o.kernel && o.initrd) {
      fs.copyFileSync(o.kernel, path.join(dir, 'kernel'));
      fs.copyFileSync(o.initrd, path.join(dir, 'initrd'));
    }
    const ram = path.join(dir, 'ram.raw');
    fs.writeFileSync(ram, '');
    fs.truncateSync(ram, cfg.ramBytes); // sparse, page-aligned: QEMU maps it as guest RAM
    const files = vmFilesIn(dir, { path: path.join(dir, 'disk.raw'), format: 'raw' }, ram,
      o.kernel ? { kernel: path.join(dir, 'kernel'), initrd: path.join(dir, 'initrd') } : undefined);
    progress({ phase: 'boot', message: `booting ${o.name} (${accel})` });
    const t0 = Date.now();
    vm = await startVm({ binary, name: `cloudlet-base-create-${path.basename(dir)}`, cfg, files, accel });
    agent = readiness.agent ? new AgentClient(files.agentSocket) : undefined;
    await waitReady(vm, agent, readiness, o.signal);
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
    agent?.close();
    if (vm) await stopVm(vm).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
