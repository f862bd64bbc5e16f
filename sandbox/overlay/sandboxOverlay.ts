/**
 * The two overlay operations that involve a VM: make an overlay of a sandbox (snapshot: VM paused,
 * device state saved, files consistent) and VM synthesis (base + overlay -> launch files ->
 * SandboxManager.launch: the guest continues where the overlay's sandbox was paused).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, ProgressSink } from '../common/progress';
import type { SandboxInfo, SandboxManager, VmConfig } from '../sandboxes/sandboxManager';
import { applyOverlay } from './apply';
import { DEFAULT_DISCARD, discardFreeSpace, type DiscardOptions, type DiscardReport } from './discard';
import { canonicalJson, OverlayManifest } from './format';
import { OverlayReader, SegmentSource } from './overlayReader';
import { createOverlay, CreateOverlayResult } from './overlayWriter';
import { SegmentCompressor } from './segmentCompressor';

export interface SandboxOverlayOptions {
  outDir?: string;      // default: the store's overlays/
  outFile?: string;
  level?: number;
  threads?: number;
  ports?: number[];     // guest ports the back-end serves (carried in the VM config for synthesis)
  signal?: AbortSignal;
  progress?: ProgressSink;
  compressor?: SegmentCompressor;
  /** Discards run first when the sandbox is running and its base has an agent (default: both). */
  discard?: DiscardOptions;
}

export type SandboxOverlayResult = CreateOverlayResult & { snapshotMs: number; discard?: DiscardReport };

/**
 * Leaves out what the guest freed (discard.ts), pauses the sandbox (it stays paused), saves its
 * device state and writes the overlay. A paused sandbox is taken as it is: no discard.
 */
export async function createSandboxOverlay(manager: SandboxManager, sandbox: string, opts: SandboxOverlayOptions = {}): Promise<SandboxOverlayResult> {
  const progress = opts.progress ?? noProgress;
  const wanted = opts.discard ?? DEFAULT_DISCARD;
  let discard: DiscardReport | undefined;
  if ((wanted.memory || wanted.disk) && manager.get(sandbox).status === 'running' && manager.bases.get(manager.layout(sandbox).baseId).manifest.readiness.agent) {
    discard = await discardFreeSpace(manager, sandbox, wanted, progress);
    throwIfCancelled(opts.signal);
  }
  progress({ phase: 'snapshot', message: `pausing ${sandbox} and saving its device state` });
  const t0 = Date.now();
  const snap = await manager.snapshot(sandbox);
  const snapshotMs = Date.now() - t0;
  throwIfCancelled(opts.signal);
  const base = manager.bases.get(snap.baseId);
  const info = manager.get(sandbox);
  const ports = opts.ports ?? info.ports.map((p) => p.guest);
  const result = await createOverlay(
    { baseId: base.id, ramFile: base.ram, diskFile: base.disk, ramDigests: base.ramDigests, diskDigests: base.diskDigests },
    { ramFile: snap.ramFile, diskLayer: snap.diskLayer, deviceState: snap.deviceState, vmConfig: { ...snap.vmConfig, ports } },
    { outDir: opts.outDir ?? manager.paths.overlays, outFile: opts.outFile, level: opts.level, threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress },
  );
  return { ...result, snapshotMs, discard };
}

export interface SynthesizeOptions {
  name?: string;
  ports?: Array<number | { guest: number; host?: number }>;
  threads?: number;
  compressor?: SegmentCompressor;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface SynthesizeResult {
  sandbox: SandboxInfo;
  overlayId?: string;
  timings: { applyMs: number; launchMs: number; totalMs: number };
}

/** The VM config an overlay carries (checked by the manifest schema): the sandbox's VmConfig plus the ports its back-end serves. */
export function overlayVmConfig(m: OverlayManifest): { vm: VmConfig; ports: number[] } {
  const { ports, ...vm } = m.vmConfig;
  return { vm, ports: ports ?? [] };
}

/**
 * An overlay resumes the VM of its base: its VM config may not ask for another (more vCPUs, another
 * machine type or CPU model, other devices). Only the MAC may differ (a handed-off server keeps its
 * source's, as the handoff destination does).
 */
function checkSameVm(vm: VmConfig, baseVm: VmConfig, baseId: string): void {
  const a = vm as unknown as Record<string, unknown>, b = baseVm as unknown as Record<string, unknown>;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const mine = k === 'nic' ? { ...vm.nic, mac: baseVm.nic.mac } : a[k];
    if (canonicalJson(mine ?? null) !== canonicalJson(b[k] ?? null)) {
      throw new CloudletError('Mismatch', `overlay manifest: vmConfig.${k} ${JSON.stringify(a[k])} differs from base ${baseId.slice(0, 12)}'s ${JSON.stringify(b[k])}; an overlay resumes its base's VM`);
    }
  }
}

/**
 * VM synthesis: checks the overlay against the local base, builds the launch files in the store's
 * tmp/ (segments fetched and decoded in parallel), then resumes them in a new sandbox.
 */
export async function synthesize(
  manager: SandboxManager,
  baseRef: string,
  overlay: string | { manifest: OverlayManifest; overlayId?: string; source: SegmentSource },
  opts: SynthesizeOptions = {},
): Promise<SynthesizeResult> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const reader = typeof overlay === 'string' ? OverlayReader.open(overlay) : undefined;
  const o = reader ? { manifest: reader.manifest, overlayId: reader.overlayId, source: reader as SegmentSource } : (overlay as { manifest: OverlayManifest; overlayId?: string; source: SegmentSource });
  const work = path.join(manager.paths.tmp, `synth-${process.pid}-${Date.now()}`);
  try {
    const base = manager.bases.get(baseRef);
    const { vm, ports } = overlayVmConfig(o.manifest);
    checkSameVm(vm, base.manifest.vm, base.id);
    progress({ phase: 'synthesize', message: `building launch VM of overlay ${o.overlayId?.slice(0, 12) ?? ''} over base ${base.id.slice(0, 12)}` });
    const built = await applyOverlay(o, o.source, { baseId: base.id, ramFile: base.ram, diskFile: base.disk }, {
      outDir: path.join(work, 'launch'), threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress,
    });
    const applyMs = Date.now() - t0;
    throwIfCancelled(opts.signal);
    const t1 = Date.now();
    const sandbox = await manager.launch({
      baseId: base.id, diskLayer: built.diskLayer, ramFile: built.ramFile, deviceState: built.deviceState, vmConfig: vm,
      ports: [...ports, ...(opts.ports ?? [])], name: opts.name, onProgress: progress,
    });
    return { sandbox, overlayId: o.overlayId, timings: { applyMs, launchMs: Date.now() - t1, totalMs: Date.now() - t0 } };
  } finally {
    reader?.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
