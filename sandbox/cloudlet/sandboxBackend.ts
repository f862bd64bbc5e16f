/**
 * The compute API's VM layer over the sandbox manager (sandbox/qemu), the base store
 * (sandbox/base) and the overlay module: resume, synthesis, overlays, lifecycle, adoption.
 * Every VM of a daemon is a sandbox in <data>/sandboxes, named after its server.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { OverlayInfo, VmBackend, VmInfo } from './vmBackend';
import { SandboxManager, type SandboxInfo } from '../sandboxes/sandboxManager';
import { OverlayReader } from '../overlay/overlayReader';
import { SegmentCompressor } from '../overlay/segmentCompressor';
import { hostQemu } from '../qemu/host';
import { createSandboxOverlay, synthesize } from '../overlay/sandboxOverlay';
import { createLogger } from '../common/log';
import { tail } from './consoleHub';
import { watchListing } from '../base/storeWatch';
import { cancelLaunchDigests, startLaunchDigests, warmRamEnabled } from '../sandboxes/launchDigestsJob';

function vmInfo(s: SandboxInfo): VmInfo {
  const state = s.status === 'running' || s.status === 'starting' ? 'running' : s.status === 'paused' ? 'paused' : s.status === 'stopped' ? 'stopped' : 'missing';
  return { id: s.id, state, baseId: s.baseId, ports: Object.fromEntries(s.ports.map((p) => [String(p.guest), `127.0.0.1:${p.host}`])) };
}

export function createVmBackend(dataDir: string, manager = new SandboxManager({ root: dataDir, log: createLogger('cloudlet-vm') })): VmBackend & { manager: SandboxManager } {
  const has = (id: string) => { try { manager.bases.get(id); return true; } catch { return false; } };
  // The segment decoders of every synthesis: worker threads started once with the daemon, not per
  // request (a synthesis would otherwise wait for their start before its first segment). Idle workers
  // do not keep the process alive.
  let decoders: SegmentCompressor | undefined;
  const sharedDecoders = () => (decoders?.usable ? decoders : (decoders = new SegmentCompressor()));
  setImmediate(() => {
    sharedDecoders();
    // QEMU's version, CPU models and machines (three QEMU runs) are probed once per process: done
    // now, not inside the first resume or synthesis. A host without QEMU is told then.
    hostQemu().catch(() => undefined);
  });
  // Once the VM runs (never on synthesis's path): what its handoff's round 0 leaves at the
  // destination, as digests, computed at nice 19 beside it (handoff/launchDigests.ts).
  const keepLaunchDigests = (id: string) => {
    const { files, vmConfig, baseId } = manager.layout(id);
    if (!fs.existsSync(files.launchOverlay)) return;
    const b = manager.bases.get(baseId);
    startLaunchDigests(id, {
      launchOverlay: files.launchOverlay, launchOverlayId: files.launchOverlayId, out: files.launchDigests, baseId: b.id,
      base: { ram: b.ram, disk: b.disk, ramDigests: b.ramDigests, diskDigests: b.diskDigests }, ramBytes: vmConfig.ramBytes,
      ...(warmRamEnabled() ? { warmRam: files.ram } : {}),
    });
  };
  return {
    manager,
    hasBase: (id) => /^[0-9a-f]{64}$/.test(id) && has(id),
    watchBases(onChange) {
      const w = watchListing(manager.bases.paths.bases, onChange, { debounceMs: 300, rescanMs: Number(process.env.CLOUDLET_BASE_RESCAN_MS) || 10_000 });
      return () => w.close();
    },
    bases: () => manager.bases.list().map((b) => ({
      baseId: b.id, name: b.name, ramBytes: b.manifest.vm.ramBytes,
      diskBytes: fs.existsSync(b.disk) ? fs.statSync(b.disk).size : 0,
    })),
    async resume(baseId, o, progress) {
      return vmInfo(await manager.resume(baseId, { name: o.name, ports: o.ports, onProgress: progress }));
    },
    inspectOverlay(file): OverlayInfo {
      const r = OverlayReader.open(file);
      try { return { overlayId: r.overlayId, baseId: r.manifest.baseId, bytes: r.fileSize }; } finally { r.close(); }
    },
    async synthesize(overlay, o, progress, signal) {
      const baseId = typeof overlay === 'string' ? this.inspectOverlay(overlay).baseId : overlay.manifest.baseId;
      // A file (an http(s) overlay) never takes parents from this daemon's store: other projects' overlays live there.
      const parentLookup = typeof overlay === 'string' ? async () => undefined : undefined;
      const res = await synthesize(manager, baseId, overlay, { name: o.name, ports: o.ports, progress, signal, parentLookup, compressor: sharedDecoders() });
      keepLaunchDigests(res.sandbox.id);
      return vmInfo(res.sandbox);
    },
    async makeOverlay(vmId, outFile, progress, signal) {
      const wasRunning = manager.get(vmId).status === 'running';
      try {
        const r = await createSandboxOverlay(manager, vmId, { outDir: path.dirname(outFile), outFile, progress, signal });
        if (r.path !== outFile) fs.renameSync(r.path, outFile);
        return { overlayId: r.overlayId, baseId: r.manifest.baseId, bytes: r.bytes };
      } finally {
        // The snapshot leaves the VM paused; a running server goes on running.
        if (wasRunning) await manager.unpause(vmId).catch(() => {});
      }
    },
    get: (vmId) => { try { return vmInfo(manager.get(vmId)); } catch { return undefined; } },
    pause: async (vmId) => { await manager.pause(vmId); },
    unpause: async (vmId) => { await manager.unpause(vmId); },
    stop: async (vmId) => { await manager.stop(vmId); },
    start: async (vmId) => vmInfo(await manager.resume(manager.get(vmId).baseId, { name: vmId })),
    reboot: async (vmId) => { await (await manager.qmpClient(vmId)).execute('system_reset'); },
    consoleLog: (vmId, maxBytes) => tail(manager.layout(vmId).files.consoleLog, maxBytes).toString('utf8'),
    delete: async (vmId) => {
      try { manager.get(vmId); } catch { return; }
      cancelLaunchDigests(manager.layout(vmId).files.launchDigests);
      await manager.delete(vmId);
    },
    async adopt() {
      await manager.adopt();
      return manager.list().map(vmInfo);
    },
    async importBase(file, progress) {
      return (await manager.bases.import(file, progress)).bundle.id;
    },
  };
}
