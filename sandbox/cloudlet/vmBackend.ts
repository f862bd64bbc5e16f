/**
 * What the compute API needs from the VM layer. sandboxBackend.ts implements it over
 * SandboxManager (sandbox/qemu), BaseStore (sandbox/base) and the overlay module; keeping it an
 * interface lets the API logic (states, jobs, restart rules) stay independent of QEMU details.
 */
import type { ProgressSink } from '../common/progress';
import type { SynthesisInput } from './overlaySource';

export interface VmInfo {
  id: string;
  state: 'running' | 'paused' | 'stopped' | 'missing';
  /** Guest port -> "127.0.0.1:port" forwarded on this host. */
  ports: Record<string, string>;
  baseId: string;
}

/** An overlay this cloudlet can synthesize: its base and its size, checked before any VM work. */
export interface OverlayInfo { overlayId: string; baseId: string; bytes: number; ports?: number[] }

/** What a handoff moves: the VM's memory file, its disk layer and its device state. */
export interface VmSnapshotFiles { ramFile: string; diskLayer: string; deviceState: string; vmConfig: unknown; baseId: string }

export interface VmBackend {
  hasBase(baseId: string): boolean;
  /** Base IDs held here. */
  bases(): Array<{ baseId: string; name: string; ramBytes: number; diskBytes: number }>;
  /** Resume a base VM (instant, no boot). */
  resume(baseId: string, o: { name: string; ports: number[] }, progress: ProgressSink, signal: AbortSignal): Promise<VmInfo>;
  /** Check an overlay file (manifest, structure) and say which base it needs. */
  inspectOverlay(file: string): OverlayInfo;
  /** Synthesis: apply the overlay (a file, or a manifest + segment source) to its base and launch the resulting VM. */
  synthesize(overlay: SynthesisInput, o: { name: string; ports: number[] }, progress: ProgressSink, signal: AbortSignal): Promise<VmInfo>;
  /** Make an overlay of a VM into `outFile`; returns its id and base. */
  makeOverlay(vmId: string, outFile: string, progress: ProgressSink, signal: AbortSignal): Promise<OverlayInfo>;
  get(vmId: string): VmInfo | undefined;
  pause(vmId: string): Promise<void>;
  unpause(vmId: string): Promise<void>;
  stop(vmId: string): Promise<void>;
  /** Continues a stopped VM from the state its stop saved (its forwarded ports may change). */
  start(vmId: string): Promise<VmInfo>;
  /** Resets the VM: it boots again from its disk (a soft reboot is done the same way). */
  reboot(vmId: string): Promise<void>;
  /** The last `maxBytes` of the VM's serial console output ('' when there is none). */
  consoleLog(vmId: string, maxBytes: number): string;
  delete(vmId: string): Promise<void>;
  /** After a daemon restart: reattach to VMs still running; returns what is known. */
  adopt(): Promise<VmInfo[]>;
  /** Import an exported base bundle file; returns its base ID. */
  importBase?(file: string, progress: ProgressSink): Promise<string>;
  /** Calls `onChange` when bases arrive or leave by any way (another process included); returns the stop. */
  watchBases?(onChange: () => void): () => void;
}
