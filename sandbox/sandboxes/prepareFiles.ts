/**
 * The one way a sandbox's disk and RAM come to be, for every start: resume and the handoff
 * destination make a new qcow2 layer over the base disk and a private copy of the base RAM;
 * synthesis takes the launch files it built (moved in, so the sandbox owns them). Also the one
 * check that a kernel-booted VM config has its kernel and initrd in the base.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { onDiskFullAsync } from '../common/hostErrors';
import type { BaseBundle } from '../base/store';
import { cloneFile, cloneFileInBackground } from '../qemu/files';
import { qemuImgBinary } from '../qemu/host';
import { run } from '../qemu/run';
import type { VmConfig } from '../qemu/vmconfig';
import type { KernelFiles, SandboxFiles } from './layout';

/** Where the sandbox's disk layer and RAM come from. */
export type FileSources =
  | { from: 'base' }                                        // empty layer over the base disk, copy of the base RAM
  | { from: 'launch'; diskLayer: string; ramFile: string }; // files made by the caller (moved in)

export interface RamCopyOptions {
  ramInBackground?: boolean;
  /**
   * With ramInBackground: RAM chunks (4 KiB pages, 1 = left out) the caller writes itself; they may
   * be left out of the copy (ramLeftOut: then they read as zeros, and the copy never writes them).
   */
  ramLeaveOut?: { chunks: Uint8Array; chunkSize: number };
}

/** The kernel and initrd a VM config boots from, or undefined when it boots from its disk. */
export function kernelFilesFor(base: BaseBundle, cfg: VmConfig): KernelFiles | undefined {
  if (!cfg.kernel) return undefined;
  if (!base.kernel || !base.initrd) throw new CloudletError('Corrupt', `base ${base.id.slice(0, 12)} lacks the kernel/initrd its VM config boots from`);
  return { kernel: base.kernel, initrd: base.initrd };
}

/** Checks launch files before anything is claimed (they must exist and fit the VM config). */
export function checkLaunchFiles(src: FileSources, cfg: VmConfig): void {
  if (src.from !== 'launch') return;
  for (const [what, f] of [['disk layer', src.diskLayer], ['RAM file', src.ramFile]] as const) {
    if (!fs.existsSync(f)) throw new CloudletError('BadInput', `${what} ${f} does not exist`);
  }
  const size = fs.statSync(src.ramFile).size;
  if (size !== cfg.ramBytes) throw new CloudletError('Corrupt', `RAM file ${src.ramFile} is ${size} bytes, the VM config says ${cfg.ramBytes}`);
}

/**
 * Puts the disk layer and RAM file in place for `files`; returns the kernel files to boot with.
 * ramInBackground (a resume): returns once the disk layer exists and the RAM file has its full
 * size, with the copy of the base RAM still running; `ramReady` resolves when it is done. QEMU can
 * start meanwhile (that takes the copy off a resume's critical path), but the device state must
 * not load before ramReady: virtio devices read their rings from guest RAM when their state loads.
 */
export async function prepareFiles(base: BaseBundle, cfg: VmConfig, files: SandboxFiles, src: FileSources, o: RamCopyOptions = {}): Promise<{ kernel?: KernelFiles; ramReady: Promise<void>; ramLeftOut: boolean }> {
  const kernel = kernelFilesFor(base, cfg);
  if (src.from === 'launch') {
    checkLaunchFiles(src, cfg);
    moveInto(src.diskLayer, files.disk);
    moveInto(src.ramFile, files.ram);
    return { kernel, ramReady: Promise.resolve(), ramLeftOut: false };
  }
  // Independent steps, run together: the disk layer (instant) and the RAM copy (reflink or sparse copy).
  const copy = o.ramInBackground ? cloneFileInBackground(base.ram, files.ram, o.ramLeaveOut) : { done: cloneFile(base.ram, files.ram), leftOut: false };
  const ram = onDiskFullAsync(files.ram, 'copying the base RAM for the VM', copy.done);
  ram.catch(() => undefined); // awaited by the caller (ramReady) or below
  await onDiskFullAsync(files.disk, 'creating the VM\'s disk layer', createDiskLayer(files.disk, base.disk)).catch(async (e) => {
    await ram.catch(() => undefined);
    throw e;
  });
  if (!o.ramInBackground) await ram;
  return { kernel, ramReady: ram, ramLeftOut: copy.leftOut };
}

/** An empty qcow2 (4 KiB clusters: the overlay's chunk size) whose backing file is a raw disk. */
export async function createDiskLayer(file: string, backingRaw: string): Promise<void> {
  await run(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${path.resolve(backingRaw)},backing_fmt=raw`, file]);
}

/** Takes ownership of a prepared file: rename within one filesystem, else copy and remove. */
function moveInto(src: string, dst: string): void {
  try { fs.renameSync(src, dst); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    fs.copyFileSync(src, dst);
    fs.rmSync(src, { force: true });
  }
}
