/**
 * The API modules a daemon mounts besides identity and cloudlet (jobs/events). One static list so
 * the CLI bundle includes them; a module file lands here with one import line.
 */
import type { ApiModule } from './context';
import type { DaemonConfig } from './config';
import { computeModule } from './api/compute';
import { imageModule } from './api/image';
import { reservationModule } from './api/reservation';
import { containerModule } from './api/container';
import { inventoryModule } from './api/inventory';
import { devSandboxModule } from './api/devsandbox';
import { createVmBackend } from './sandboxBackend';
import { createHandoffService } from '../handoff/handoffService';
import { AddressPolicy, DEFAULT_OVERLAY_NETWORKS } from '../common/addressPolicy';

export function builtinModules(o: { config: DaemonConfig; dataDir: string }): ApiModule[] {
  const backend = createVmBackend(o.dataDir);
  const compute = computeModule({ backend, maxServers: o.config.max_servers, overlayMaxBytes: o.config.overlay_max_bytes,
    overlayNetworks: new AddressPolicy(o.config.overlay_url_networks ?? DEFAULT_OVERLAY_NETWORKS), registryLogins: o.config.registry_logins,
    registryLoginsByName: (o.config.identity?.provider ?? 'embedded') === 'embedded',
    handoff: (ctx, lifecycle) => createHandoffService(ctx, lifecycle, backend) });
  return [
    compute,
    imageModule({ maxUploadBytes: o.config.overlay_max_bytes, importBase: backend.importBase ? (f) => backend.importBase!(f, () => {}) : undefined }),
    reservationModule(),
    containerModule(),
    inventoryModule(),
    // Base creation boots a VM: it counts against compute's max_servers rule like servers and handoffs.
    devSandboxModule({ manager: backend.manager, admission: () => compute.admission }),
  ];
}
