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
import type { BaseBundle } from '../base/store';
import { applyOverlayInto, ramChunksOf } from './apply';
import { applyChain, folderLookup, resolveChain, type ChainHop, type ParentLookup } from './parentChain';
import { DEFAULT_DISCARD, discardFreeSpace, type DiscardOptions, type DiscardReport } from './discard';
import { canonicalJson, CHUNK_SIZE, OverlayManifest } from './format';
import { OverlayReader, SegmentSource } from './overlayReader';
import { createOverlay, CreateOverlayResult, type ParentLaunch } from './overlayWriter';
import { SegmentCompressor } from './segmentCompressor';
import { createLogger } from '../common/log';

const log = createLogger('synthesis');

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
  /**
   * Store the overlay against this parent overlay (an ID in the store's overlays/, its chain there
   * too) instead of the base: only what changed since the parent's launch (parentChain.ts).
   */
  parent?: string;
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
  const vmConfig = { ...snap.vmConfig, ports };
  const images = { baseId: base.id, ramFile: base.ram, diskFile: base.disk, ramDigests: base.ramDigests, diskDigests: base.diskDigests };
  const write = (parent?: ParentLaunch) => createOverlay(
    { ...images, parent },
    { ramFile: snap.ramFile, diskLayer: snap.diskLayer, deviceState: snap.deviceState, vmConfig },
    { outDir: opts.outDir ?? manager.paths.overlays, outFile: opts.outFile, level: opts.level, threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress },
  );
  if (!opts.parent) return { ...(await write()), snapshotMs, discard };
  // The parent's launch images, built from its chain as synthesis would, are the child's base.
  const readers: OverlayReader[] = [];
  const work = path.join(manager.paths.tmp, `parent-${process.pid}-${Date.now()}`);
  try {
    const leaf = findStoredOverlay(manager.paths.overlays, opts.parent, readers);
    const chain = await resolveChain(leaf, folderLookup([manager.paths.overlays], readers));
    if (leaf.manifest.baseId !== base.id) {
      throw new CloudletError('Mismatch', `parent overlay ${leaf.overlayId.slice(0, 12)} was made for base ${leaf.manifest.baseId.slice(0, 12)}, sandbox ${sandbox} runs base ${base.id.slice(0, 12)}`);
    }
    checkSameVm(overlayVmConfig(leaf.manifest).vm, snap.vmConfig as VmConfig, base.id);
    progress({ phase: 'parent', message: `building the launch of parent ${leaf.overlayId.slice(0, 12)} (${chain.length} overlay${chain.length > 1 ? 's' : ''})` });
    const launch = await applyChain(chain, { baseId: base.id, ramFile: base.ram, diskFile: base.disk }, {
      outDir: path.join(work, 'launch'), threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress,
    });
    throwIfCancelled(opts.signal);
    const depth = leaf.manifest.parent?.depth ?? 0;
    return { ...(await write({ overlayId: leaf.overlayId, depth, ramFile: launch.ramFile, diskLayer: launch.diskLayer })), snapshotMs, discard };
  } finally {
    for (const r of readers) r.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** An overlay of the store by ID (or a unique prefix of 6+ hex digits), opened and checked. */
export function findStoredOverlay(dir: string, id: string, opened: OverlayReader[]): ChainHop {
  if (!/^[0-9a-f]{6,64}$/.test(id)) throw new CloudletError('BadInput', `parent overlay ${JSON.stringify(id.slice(0, 80))} must be an overlay ID (6 to 64 hex digits)`);
  const hits = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith(id) && f.endsWith('.overlay')) : [];
  if (hits.length > 1) throw new CloudletError('BadInput', `overlay ID prefix ${id} matches ${hits.length} overlays; give more digits`);
  if (!hits.length) throw new CloudletError('NotFound', `no overlay ${id} in ${dir}: pull or build the parent overlay first`, { hint: 'cloudlet overlay list; cloudlet overlay pull REFERENCE --out <store>/overlays/ID.overlay' });
  const r = OverlayReader.open(path.join(dir, hits[0]));
  opened.push(r);
  if (`${r.overlayId}.overlay` !== hits[0]) throw new CloudletError('Corrupt', `${hits[0]} in ${dir} holds overlay ${r.overlayId}, not the one its name says; refused`);
  return { manifest: r.manifest, overlayId: r.overlayId, source: r };
}

export interface SynthesizeOptions {
  /** Where the parents of a child overlay are found (default: the store's overlays/ and the file's folder). */
  parentLookup?: ParentLookup;
  name?: string;
  ports?: Array<number | { guest: number; host?: number }>;
  threads?: number;
  compressor?: SegmentCompressor;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

/** An overlay given as its manifest and a source of its stored blobs (a registry), not as a file. */
export interface SynthesisSource {
  manifest: OverlayManifest;
  overlayId?: string;
  source: SegmentSource;
  parentLookup?: ParentLookup;
  /** Writes the overlay file (the one published) to `file`: kept as the VM's launch overlay for handoff. */
  keep?: (file: string) => Promise<void>;
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
export function checkSameVm(vm: VmConfig, baseVm: VmConfig, baseId: string): void {
  const a = vm as unknown as Record<string, unknown>, b = baseVm as unknown as Record<string, unknown>;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const mine = k === 'nic' ? { ...vm.nic, mac: baseVm.nic.mac } : a[k];
    if (canonicalJson(mine ?? null) !== canonicalJson(b[k] ?? null)) {
      throw new CloudletError('Mismatch', `overlay manifest: vmConfig.${k} ${JSON.stringify(a[k])} differs from base ${baseId.slice(0, 12)}'s ${JSON.stringify(b[k])}; an overlay resumes its base's VM`);
    }
  }
}

/**
 * Keeps the overlay a VM was made from in its folder (a hard link: no copy, and the caller may
 * remove its own name) with the ID of the overlay applied: a handoff sends it as round 0
 * (handoff/launchRound.ts) only if the file still has that ID (a link shares the caller's inode,
 * which the caller may rewrite). Best effort: a VM without it is handed off by comparing its RAM
 * with the base.
 */
function keepLaunchOverlay(file: string, overlayId: string | undefined, files: { launchOverlay: string; launchOverlayId: string }): void {
  if (!overlayId) return;
  try {
    fs.writeFileSync(files.launchOverlayId, overlayId);
    fs.linkSync(file, files.launchOverlay);
  } catch (e) { log.info(`launch overlay not kept for handoff (${(e as Error).message}); a handoff compares the VM's RAM with the base instead`); }
}

/**
 * An overlay synthesized from a segment source (a registry: oci://), not a file: when the source can
 * write the overlay file (`keep`, byte-identical to the published one, its blobs from the pull's
 * cache), it is written into the VM's folder as its launch overlay, so a handoff can send it as round 0
 * (a copy: the published file exists nowhere else here). Once the VM runs; best effort, as keepLaunchOverlay.
 */
async function keepWrittenOverlay(o: SynthesisSource, files: { launchOverlay: string; launchOverlayId: string }, progress: ProgressSink): Promise<void> {
  if (!o.keep || !o.overlayId) return;
  try {
    fs.writeFileSync(files.launchOverlayId, o.overlayId);
    await o.keep(files.launchOverlay);
    progress({ phase: 'running', message: `launch overlay ${o.overlayId.slice(0, 12)} kept for handoff (${fs.statSync(files.launchOverlay).size} bytes)` });
  } catch (e) { log.info(`launch overlay not kept for handoff (${(e as Error).message}); a handoff compares the VM's RAM with the base instead`); }
}

/**
 * A standalone overlay's synthesis with QEMU's start overlapping the apply: the launch is prepared
 * (sandbox claimed, empty disk layer, ports, the base RAM copy running in the background) while the
 * first segments are fetched and decoded, its QEMU started paused with -incoming defer (no guest code can run) while the
 * segments are checked and written into its files, and the device state streamed in only once
 * every segment checked out; then the VM continues. Any failure discards the prepared launch (its
 * QEMU and folder): nothing is left behind, as with the launch after a complete build.
 */
async function synthesizeIntoPrepared(
  manager: SandboxManager, base: BaseBundle, hop: ChainHop, vm: VmConfig, ports: NonNullable<SynthesizeOptions['ports']>, opts: SynthesizeOptions, t0: number,
): Promise<Omit<SynthesizeResult, 'overlayId'>> {
  const progress = opts.progress ?? noProgress;
  // The base RAM copy leaves out the pages the overlay writes (its zero pages then need no write).
  const prep = manager.prepareLaunch({ baseId: base.id, vmConfig: vm, ports, name: opts.name }, { ramInBackground: true, ramLeaveOut: { chunks: ramChunksOf(hop.manifest), chunkSize: CHUNK_SIZE } });
  const started = prep.then((p) => manager.startPrepared(p.id));
  prep.catch(() => undefined);
  started.catch(() => undefined);
  try {
    const applied = await applyOverlayInto(hop, hop.source, { baseId: base.id, ramFile: base.ram, diskFile: base.disk },
      { files: prep.then((p) => ({ ramFile: p.files.ram, diskLayer: p.files.disk, ramLeftOut: p.ramLeftOut })), ramReady: prep.then((p) => p.ramReady), diskOpened: started }, { threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress });
    const applyMs = Date.now() - t0;
    throwIfCancelled(opts.signal);
    const t1 = Date.now();
    progress({ phase: 'launch', message: 'launch files built; loading the device state into the waiting QEMU' });
    const { id, ramReady } = await prep;
    await ramReady;
    await started;
    const sandbox = await manager.completePrepared(id, applied.deviceState);
    progress({ phase: 'running', message: `${sandbox.id} running` });
    return { sandbox, timings: { applyMs, launchMs: Date.now() - t1, totalMs: Date.now() - t0 } };
  } catch (e) {
    // The prepared launch (if it was made) goes, whatever state its QEMU reached.
    const p = await prep.catch(() => undefined);
    await p?.ramReady.catch(() => undefined);
    await started.catch(() => undefined);
    if (p) await manager.delete(p.id).catch((d) => log.warn(`synthesis failed; discarding its prepared launch ${p.id}: ${(d as Error).message}`));
    throw e;
  }
}

/**
 * Synthesis of a standalone overlay into a prepared launch (QEMU started paused while the overlay is
 * applied into its files) only with CLOUDLET_SYNTHESIS_OVERLAP=1. Measured idle on 2 cores (bench/RESULTS.md,
 * session 9), the launch files first and QEMU after them was as fast or faster (ahead by 0.17-0.29 s in 3 of
 * 4 runs, tied in one) and took 0.25-0.5 s less CPU: the overlap's RAM copy thread and QEMU's start compete
 * with the apply.
 */
export function synthesisOverlapEnabled(): boolean { return process.env.CLOUDLET_SYNTHESIS_OVERLAP === '1'; }

/**
 * VM synthesis: checks the overlay against the local base and resumes base + overlay in a new
 * sandbox. The launch files are built in the store's tmp/ first (segments fetched and decoded in
 * parallel) and then launched; with synthesisOverlapEnabled() a standalone overlay is applied into a
 * prepared launch whose QEMU starts meanwhile instead (synthesizeIntoPrepared).
 */
export async function synthesize(
  manager: SandboxManager,
  baseRef: string,
  overlay: string | SynthesisSource,
  opts: SynthesizeOptions = {},
): Promise<SynthesizeResult> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const reader = typeof overlay === 'string' ? OverlayReader.open(overlay) : undefined;
  const o: SynthesisSource = reader ? { manifest: reader.manifest, overlayId: reader.overlayId, source: reader as SegmentSource, parentLookup: undefined } : (overlay as SynthesisSource);
  const work = path.join(manager.paths.tmp, `synth-${process.pid}-${Date.now()}`);
  const readers: OverlayReader[] = [];
  try {
    const base = manager.bases.get(baseRef);
    const { vm, ports } = overlayVmConfig(o.manifest);
    checkSameVm(vm, base.manifest.vm, base.id);
    // A child overlay: its whole chain found and checked before any segment byte is used.
    let chain: ChainHop[] = [{ manifest: o.manifest, overlayId: o.overlayId ?? '', source: o.source }];
    if (o.manifest.parent) {
      const dirs = [manager.paths.overlays, ...(typeof overlay === 'string' ? [path.dirname(path.resolve(overlay))] : [])];
      chain = await resolveChain(chain[0], opts.parentLookup ?? o.parentLookup ?? folderLookup(dirs, readers));
    }
    progress({ phase: 'synthesize', message: `building launch VM of overlay ${o.overlayId?.slice(0, 12) ?? ''} over base ${base.id.slice(0, 12)}${chain.length > 1 ? ` (chain of ${chain.length} overlays)` : ''}` });
    const allPorts = [...ports, ...(opts.ports ?? [])];
    if (chain.length === 1 && synthesisOverlapEnabled()) {
      const r = await synthesizeIntoPrepared(manager, base, chain[0], vm, allPorts, opts, t0);
      if (typeof overlay === 'string') keepLaunchOverlay(overlay, o.overlayId, manager.layout(r.sandbox.id).files);
      else await keepWrittenOverlay(o, manager.layout(r.sandbox.id).files, progress);
      return { ...r, overlayId: o.overlayId };
    }
    const built = await applyChain(chain, { baseId: base.id, ramFile: base.ram, diskFile: base.disk }, {
      outDir: path.join(work, 'launch'), threads: opts.threads, compressor: opts.compressor, signal: opts.signal, progress,
    });
    const applyMs = Date.now() - t0;
    throwIfCancelled(opts.signal);
    const t1 = Date.now();
    progress({ phase: 'launch', message: 'launch files built; starting the VM' });
    const sandbox = await manager.launch({
      baseId: base.id, diskLayer: built.diskLayer, ramFile: built.ramFile, deviceState: built.deviceState, vmConfig: vm,
      ports: allPorts, name: opts.name, onProgress: progress,
    });
    if (typeof overlay === 'string' && chain.length === 1) keepLaunchOverlay(overlay, o.overlayId, manager.layout(sandbox.id).files);
    else if (chain.length === 1) await keepWrittenOverlay(o, manager.layout(sandbox.id).files, progress);
    return { sandbox, overlayId: o.overlayId, timings: { applyMs, launchMs: Date.now() - t1, totalMs: Date.now() - t0 } };
  } finally {
    reader?.close();
    for (const r of readers) r.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
