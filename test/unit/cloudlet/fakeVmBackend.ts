/**
 * A VmBackend without QEMU for unit tests of the compute API's state machine: VMs are entries in a
 * map, every call is logged, and a test can hold a resume (to see BUILD, or delete while building),
 * make it fail, or say which VMs a restarted daemon finds running.
 */
import * as fs from 'fs';
import type { VmBackend, VmInfo, OverlayInfo } from '../../../sandbox/cloudlet/vmBackend';
import type { ProgressSink } from '../../../sandbox/common/progress';
import { CloudletError } from '../../../sandbox/common/errors';

export const FAKE_BASE = 'b'.repeat(64);

export class FakeVmBackend implements VmBackend {
  readonly vms = new Map<string, VmInfo>();
  readonly calls: string[] = [];
  /** While set, a resume waits until `release()` (or its job is cancelled, unless `ignoreCancel`). */
  holdResume = false;
  ignoreCancel = false;
  /** The next resumes fail with this error. */
  failResume?: Error;
  /** What adopt() finds running (a restarted daemon). */
  adoptable: VmInfo[] = [];
  private held: Array<() => void> = [];
  private next = 1;

  constructor(private readonly prefix = 'vm') {}

  /** Lets every held resume go on. */
  release(): void { for (const go of this.held.splice(0)) go(); }
  heldCount(): number { return this.held.length; }

  hasBase(baseId: string): boolean { return baseId === FAKE_BASE; }
  bases() { return [{ baseId: FAKE_BASE, name: 'fake-base', ramBytes: 256 << 20, diskBytes: 1 << 30 }]; }

  async resume(baseId: string, o: { name: string; ports: number[] }, progress: ProgressSink, signal: AbortSignal): Promise<VmInfo> {
    this.calls.push(`resume ${o.name}`);
    progress({ phase: 'resume' });
    if (this.holdResume) {
      await new Promise<void>((resolve, reject) => {
        this.held.push(resolve);
        if (!this.ignoreCancel) signal.addEventListener('abort', () => reject(new CloudletError('Cancelled', 'cancelled')));
      });
    }
    if (this.failResume) throw this.failResume;
    const vm: VmInfo = { id: `${this.prefix}-${this.next++}`, state: 'running', baseId, ports: Object.fromEntries(o.ports.map((p) => [String(p), `127.0.0.1:${40000 + p}`])) };
    this.vms.set(vm.id, vm);
    return vm;
  }

  inspectOverlay(): OverlayInfo { throw new CloudletError('BadInput', 'no overlays in the fake backend'); }
  async synthesize(): Promise<VmInfo> { throw new CloudletError('BadInput', 'no synthesis in the fake backend'); }

  async makeOverlay(vmId: string, outFile: string): Promise<OverlayInfo> {
    this.calls.push(`makeOverlay ${vmId}`);
    fs.writeFileSync(outFile, 'overlay bytes');
    return { overlayId: 'o'.repeat(64), baseId: FAKE_BASE, bytes: 13 };
  }

  get(vmId: string): VmInfo | undefined { return this.vms.get(vmId); }
  async pause(vmId: string): Promise<void> { this.setState('pause', vmId, 'paused'); }
  async unpause(vmId: string): Promise<void> { this.setState('unpause', vmId, 'running'); }
  async stop(vmId: string): Promise<void> { this.setState('stop', vmId, 'stopped'); }
  async start(vmId: string): Promise<VmInfo> {
    this.setState('start', vmId, 'running');
    return { ...this.vms.get(vmId)! };
  }
  async reboot(vmId: string): Promise<void> { this.setState('reboot', vmId, 'running'); }
  consoleLog(vmId: string, maxBytes: number): string { return `console of ${vmId}\n`.slice(-maxBytes); }
  async delete(vmId: string): Promise<void> { this.calls.push(`delete ${vmId}`); this.vms.delete(vmId); }

  async adopt(): Promise<VmInfo[]> {
    for (const v of this.adoptable) this.vms.set(v.id, { ...v });
    return this.adoptable.map((v) => ({ ...v }));
  }

  private setState(call: string, vmId: string, state: VmInfo['state']): void {
    this.calls.push(`${call} ${vmId}`);
    const vm = this.vms.get(vmId);
    if (!vm) throw new CloudletError('NotFound', `no VM ${vmId}`);
    vm.state = state;
  }
}
