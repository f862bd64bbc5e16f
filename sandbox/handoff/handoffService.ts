/** Handoff between two cloudlets (see ARCHITECTURE.md "Handoff"). */
import type { DaemonContext } from '../cloudlet/context';
import type { ServerStore } from '../cloudlet/serverStore';
import type { VmBackend } from '../cloudlet/vmBackend';
import type { HandoffService } from './service';
import { CloudletError } from '../common/errors';

export function handoffService(_ctx: DaemonContext, _servers: ServerStore, _backend: VmBackend): HandoffService {
  return {
    start() { throw new CloudletError('Unavailable', 'handoff is not wired in yet'); },
    routes() {},
    async stop() {},
  };
}
