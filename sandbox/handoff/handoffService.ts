/**
 * Handoff between two cloudlets (docs/api.md "Handoff"): the compute API's cloudlet-handoff
 * action runs a HandoffSender as a job (source side); the HandoffReceiver serves the destination
 * routes. The source server is removed only after the destination reported the VM running.
 * Server rows are the ServerLifecycle's: this service tells it what happened, it writes them.
 */
import type { DaemonContext } from '../cloudlet/context';
import type { ServerRow } from '../cloudlet/serverStore';
import type { ServerLifecycle } from '../cloudlet/servers/serverLifecycle';
import type { HandoffService } from '../cloudlet/servers/serverHandoff';
import type { VmBackend } from '../cloudlet/vmBackend';
import type { SandboxManager } from '../sandboxes/sandboxManager';
import { SegmentCompressor } from '../overlay/segmentCompressor';
import { CloudletError, describeError } from '../common/errors';
import { HandoffSender } from './handoffSender';
import { HandoffReceiver } from './handoffReceiver';
import { DestinationClient } from './destinationClient';
import { PendingHandoffs } from './pendingHandoffs';
import { withPin, type TlsTrust } from '../client/transport';
import { envNumber } from '../common/env';

/** How long a restarted source asks a destination about a cut handoff (CLOUDLET_HANDOFF_RECOVER_MS, default 30 s). */
function recoverMs(): number {
  return envNumber('CLOUDLET_HANDOFF_RECOVER_MS', 30_000, 0);
}

export function createHandoffService(ctx: DaemonContext, lifecycle: ServerLifecycle, backend: VmBackend & { manager?: SandboxManager }): HandoffService {
  const manager = backend.manager;
  let compressor: SegmentCompressor | undefined;
  const shared = () => (compressor ??= new SegmentCompressor());
  const receiver = manager ? new HandoffReceiver({ ctx, lifecycle, manager, compressor: shared }) : undefined;
  const pending = new PendingHandoffs(ctx.db);
  const stopping = new AbortController();
  const recovering = new Set<Promise<void>>();

  /**
   * A handoff cut by a restart of this daemon, its VM paused here: ask the destination whether the
   * VM runs there (bounded); running -> let go of the copy here; not running -> resume it here;
   * no answer -> leave it paused with a fault saying what to check.
   */
  /** The destination's pinned certificate if the caller gave one, else the daemon's trust for its peers. */
  const destTrust = (url: string, fingerprint?: string): TlsTrust => (fingerprint ? withPin(ctx.peerTrust, url, fingerprint) : ctx.peerTrust);

  const recoverCut = async (server: ServerRow, vmId: string, p: { handoffUrl: string; destToken: string; sessionId: string; destFingerprint?: string }) => {
    const dest = new DestinationClient(p.handoffUrl, p.destToken, stopping.signal, destTrust(p.handoffUrl, p.destFingerprint));
    const deadline = Date.now() + recoverMs();
    let last = 'no answer yet';
    for (;;) {
      if (stopping.signal.aborted) return; // asked again at the next start (the record stays)
      try {
        const st = await dest.status(p.sessionId);
        if (st.state === 'running') {
          pending.clear(server.id);
          ctx.log.info(`server ${server.id}: its handoff to ${dest.where} completed while this daemon was down; removing the source VM`);
          await lifecycle.handedOff(server, vmId, { handoff_to: dest.where, ...(st.finish ? { handoff_destination_server_id: st.finish.server.id } : {}) });
          return;
        }
        if (st.state === 'not_running') {
          pending.clear(server.id);
          const why = `handoff to ${dest.where} cut by a restart of the source; the destination does not run the VM`;
          try {
            await backend.unpause(vmId);
          } catch (e) {
            lifecycle.fail(server.id, `${why}; resuming it at the source failed: ${describeError(e)}`, 'handoff-failed');
            return;
          }
          lifecycle.handoffEnded(server, 'ACTIVE', `${why}; resumed at the source`);
          return;
        }
        last = 'the destination is still finishing';
      } catch (e) {
        last = describeError(e);
      }
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 1000).unref());
    }
    pending.clear(server.id);
    const message = `handoff to ${dest.where} was cut by a restart of the source after the VM was paused, and the destination did not say whether it runs the VM (${last}); `
      + `the VM was left paused here: check the destination (a server from handoff session ${p.sessionId}) and unpause this one by hand only if it does not run there, else delete this one`;
    lifecycle.handoffEnded(server, 'PAUSED', message, { change: 'handoff-unknown', fault: new CloudletError('Unavailable', message) });
  };

  return {
    start(a, server, req) {
      if (!manager || !server.vm_id) throw new CloudletError('BadInput', 'handoff is not available on this cloudlet', { status: 501 });
      const vmId = server.vm_id;
      pending.begin(server.id, req.handoffUrl, req.destToken, req.destFingerprint);
      lifecycle.migrating(server);
      const jobId = ctx.jobs.start('handoff', a.projectId, server.id, async (job) => {
        try {
          const sender = new HandoffSender(manager, shared(), {
            vmId, serverId: server.id, server: { name: server.name, flavorId: server.flavor_id, metadata: server.metadata },
            handoffUrl: req.handoffUrl, destToken: req.destToken, destVmName: req.destVmName, destTrust: destTrust(req.handoffUrl, req.destFingerprint), progress: (e) => job.progress(e), signal: job.signal,
            onSession: (sid) => pending.session(server.id, sid),
          });
          const { destination_ports: _ports, ...report } = await sender.run();
          // The destination runs the VM: only now does the source let go of its copy.
          await lifecycle.handedOff(server, vmId, { handoff_to: report.destination, handoff_destination_server_id: report.destination_server_id,
            handoff_total_ms: String(report.total_ms), handoff_downtime_ms: String(report.downtime_ms), handoff_bytes_sent: String(report.bytes_sent), handoff_rounds: String(report.rounds) });
          return report;
        } catch (e) {
          // The VM stays here, in whatever state the attempt left it.
          const st = backend.get(vmId)?.state;
          lifecycle.handoffEnded(server, st === 'paused' ? 'PAUSED' : st === 'running' ? 'ACTIVE' : 'ERROR', describeError(e));
          throw e;
        } finally {
          pending.clear(server.id);
        }
      });
      lifecycle.attachJob(server.id, jobId);
      return jobId;
    },
    recover(server, paused) {
      const p = pending.get(server.id);
      const vmId = server.vm_id;
      if (!p || !p.sessionId || !vmId || !paused) {
        // Cut before the pause (or before the session): the destination never ran the VM; drop its session.
        pending.clear(server.id);
        if (p?.sessionId) void new DestinationClient(p.handoffUrl, p.destToken, undefined, destTrust(p.handoffUrl, p.destFingerprint)).abort(p.sessionId);
        return false;
      }
      lifecycle.migrating(server, 'PAUSED');
      const sessionId = p.sessionId;
      const run = recoverCut(server, vmId, { handoffUrl: p.handoffUrl, destToken: p.destToken, sessionId, destFingerprint: p.destFingerprint })
        .catch((e) => ctx.log.warn(`server ${server.id}: settling its cut handoff: ${describeError(e)}`));
      recovering.add(run);
      void run.finally(() => recovering.delete(run));
      return true;
    },
    routes(app) { receiver?.routes(app); },
    async stop() {
      stopping.abort();
      await Promise.all([...recovering]);
      await receiver?.stop();
      await compressor?.close();
    },
  };
}
