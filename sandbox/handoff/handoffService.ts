/**
 * Handoff between two cloudlets (ARCHITECTURE.md "Handoff"): the compute API's cloudlet-handoff
 * action runs a HandoffSender as a job (source side); the HandoffReceiver serves the destination
 * routes. The source server is removed only after the destination reported the VM running.
 */
import type { DaemonContext } from '../cloudlet/context';
import type { ServerStore } from '../cloudlet/serverStore';
import type { VmBackend } from '../cloudlet/vmBackend';
import type { SandboxManager } from '../qemu/sandboxManager';
import { SegmentCompressor } from '../overlay/segmentCompressor';
import { CloudletError, describeError } from '../common/errors';
import type { HandoffService } from './service';
import { HandoffSender } from './handoffSender';
import { HandoffReceiver } from './handoffReceiver';

export function handoffService(ctx: DaemonContext, servers: ServerStore, backend: VmBackend & { manager?: SandboxManager }, o: { maxServers: number }): HandoffService {
  const manager = backend.manager;
  let compressor: SegmentCompressor | undefined;
  const shared = () => (compressor ??= new SegmentCompressor());
  const publish = (id: string, projectId: string, status: string, change: string) => ctx.events.publish('servers', { id, project_id: projectId, status, change });
  const receiver = manager ? new HandoffReceiver({ ctx, servers, manager, compressor: shared, maxServers: o.maxServers, publish }) : undefined;

  return {
    start(a, server, req) {
      if (!manager || !server.vm_id) throw new CloudletError('BadInput', 'handoff is not available on this cloudlet', { status: 501 });
      const vmId = server.vm_id;
      servers.update(server.id, { task_state: 'migrating' });
      publish(server.id, server.project_id, server.status, 'migrating');
      const jobId = ctx.jobs.start('handoff', a.projectId, server.id, async (job) => {
        try {
          const sender = new HandoffSender(manager, shared(), {
            vmId, serverId: server.id, server: { name: server.name, flavorId: server.flavor_id, metadata: server.metadata },
            handoffUrl: req.handoffUrl, destToken: req.destToken, destVmName: req.destVmName, progress: (e) => job.progress(e), signal: job.signal,
          });
          const { destination_ports: _ports, ...report } = await sender.run();
          // The destination runs the VM: only now does the source let go of its copy.
          await backend.delete(vmId).catch((e) => ctx.log.warn(`handoff of server ${server.id}: removing the source VM: ${describeError(e)}`));
          const meta = { ...server.metadata, handoff_to: report.destination, handoff_destination_server_id: report.destination_server_id,
            handoff_total_ms: String(report.total_ms), handoff_downtime_ms: String(report.downtime_ms), handoff_bytes_sent: String(report.bytes_sent), handoff_rounds: String(report.rounds) };
          servers.update(server.id, { status: 'DELETED', task_state: null, vm_id: null, metadata: meta });
          publish(server.id, server.project_id, 'DELETED', 'handed-off');
          return report;
        } catch (e) {
          if (servers.getRow(server.id)) {
            const st = backend.get(vmId)?.state;
            servers.update(server.id, { task_state: null, status: st === 'paused' ? 'PAUSED' : st === 'running' ? 'ACTIVE' : 'ERROR',
              metadata: { ...server.metadata, handoff_error: describeError(e).slice(0, 255) } });
            publish(server.id, server.project_id, st === 'running' ? 'ACTIVE' : 'ERROR', 'handoff-failed');
          }
          throw e;
        }
      });
      servers.update(server.id, { job_id: jobId });
      return jobId;
    },
    routes(app) { receiver?.routes(app); },
    async stop() {
      await receiver?.stop();
      await compressor?.close();
    },
  };
}
