/**
 * After a daemon restart: adopt the VMs still running, then make every server's row say what is
 * true (a build cut by the stop is ERROR, a cut operation is cleared, a VM that ended is ERROR),
 * and remove VMs no server owns. Called through ServerLifecycle.reconcile.
 */
import type { DaemonContext } from '../context';
import type { ServerRow, ServerStore } from '../serverStore';
import type { VmBackend, VmInfo } from '../vmBackend';
import type { HandoffService } from './serverHandoff';
import { describeError } from '../../common/errors';

/** What reconciling needs (a part of the lifecycle's dependencies). */
export interface RecoveryDeps { ctx: DaemonContext; backend: VmBackend; servers: ServerStore }

export async function reconcileAfterRestart(d: RecoveryDeps, handoff: HandoffService | undefined): Promise<void> {
  const { backend, servers } = d;
  const live = new Map((await backend.adopt()).map((v) => [v.id, v]));
  for (const r of servers.list()) {
    if (r.status === 'BUILD') { await failCutBuild(d, r); continue; }
    let vm = r.vm_id ? live.get(r.vm_id) : undefined;
    if (r.task_state) {
      const settled = await settleCutOperation(d, handoff, r, vm);
      if (settled === 'handoff') continue;
      vm = settled;
    }
    if (r.status === 'ACTIVE' || r.status === 'PAUSED') {
      if (!vm || vm.state === 'missing' || vm.state === 'stopped') servers.fail(r.id, 'the VM process ended while the cloudlet daemon was down');
      else servers.update(r.id, { status: vm.state === 'paused' ? 'PAUSED' : 'ACTIVE', ports: vm.ports });
    }
  }
  // Servers marked DELETED with a VM left over (crash mid-delete) lose it now.
  for (const v of live.values()) {
    if (!servers.ownerOfVm(v.id)) await backend.delete(v.id).catch(() => {});
  }
}

/** Its job was cut by the stop: whatever it half-built is removed, the server is ERROR. */
async function failCutBuild(d: RecoveryDeps, r: ServerRow): Promise<void> {
  const job = r.job_id ? d.ctx.jobs.get(r.job_id) : undefined;
  if (r.vm_id) await d.backend.delete(r.vm_id).catch(() => {});
  d.servers.fail(r.id, `interrupted: the cloudlet daemon stopped while this server was being built${job?.error ? ` (${job.error})` : ''}`);
}

/**
 * An operation on a built server (overlay-finish, handoff) was cut: the server keeps its VM.
 * A handoff pauses the VM for its last round; the source keeps the VM until the destination
 * confirms, so a handoff cut by the stop resumes it here. If the handoff had sent its last round,
 * the destination may already run the VM: the handoff service asks it (in the background) before
 * this copy is resumed or removed ('handoff': the row is the handoff service's to settle).
 */
async function settleCutOperation(d: RecoveryDeps, handoff: HandoffService | undefined, r: ServerRow, vm: VmInfo | undefined): Promise<VmInfo | undefined | 'handoff'> {
  const pausedByHandoff = r.task_state === 'migrating' && r.status === 'ACTIVE' && vm?.state === 'paused';
  if (r.task_state === 'migrating' && handoff?.recover?.(r, pausedByHandoff)) return 'handoff';
  if (pausedByHandoff && vm) {
    await d.backend.unpause(vm.id).catch((e) => d.ctx.log.warn(`server ${r.id}: resuming its VM after a cut handoff: ${describeError(e)}`));
    vm = d.backend.get(vm.id) ?? vm;
  }
  d.servers.update(r.id, { task_state: null });
  return vm;
}
