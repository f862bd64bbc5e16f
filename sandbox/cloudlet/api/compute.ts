/**
 * Nova v2.1 (/compute/v2.1): servers, flavors and the cloudlet actions.
 * - create with imageRef = a base image: resume the base VM (no boot);
 * - create with metadata.overlay_url: VM synthesis (fetch, verify, apply, launch) as a job;
 * - actions: pause, unpause, os-stop, os-start, reboot, os-getConsoleOutput, cloudlet-overlay-finish, cloudlet-handoff;
 * - metadata items, limits, quota sets, availability zones, key pairs (computeMetadata.ts, computeInfo.ts).
 * Status values and OS-EXT-STS fields as upstream. Each long operation is a job whose id is in
 * the server's OS-EXT-CLOUDLET:job_id, its progress on /cloudlet/v1/jobs/{id}/events.
 * The routes (computeServers.ts, computeFlavors.ts) parse and answer; a server's state is the
 * ServerLifecycle's (sandbox/cloudlet/servers/).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import type { VmBackend } from '../vmBackend';
import { ServerStore, migrateServers } from '../serverStore';
import { ImageStore, migrateImages } from '../imageStore';
import type { AddressPolicy } from '../../common/addressPolicy';
import type { HandoffService } from '../servers/serverHandoff';
import { Admission } from '../servers/admission';
import { ServerLifecycle } from '../servers/serverLifecycle';
import { syncBaseImages } from '../baseImages';
import { flavorRoutes, versionRoutes } from './computeFlavors';
import { serverRoutes } from './computeServers';
import { metadataRoutes } from './computeMetadata';
import { computeInfoRoutes, computeRootRoutes, requestedComputeVersion } from './computeInfo';


export interface ComputeOptions {
  backend: VmBackend;
  maxServers: number;
  overlayMaxBytes: number;
  /** Where an overlay_url may lead (default: public and loopback addresses). */
  overlayNetworks?: AddressPolicy;
  /** Registry -> projects that may pull with the daemon user's own Docker login (config registry_logins). */
  registryLogins?: Record<string, string[]>;
  /** registry_logins entries may name projects (embedded identity: names unique); else IDs only. */
  registryLoginsByName?: boolean;
  handoff?: (ctx: DaemonContext, lifecycle: ServerLifecycle) => HandoffService;
}

/** The compute module; `admission` is its max_servers rule, for other modules that start VMs (after routes). */
export type ComputeModule = ApiModule & { readonly admission: Admission };

export function computeModule(opts: ComputeOptions): ComputeModule {
  let lifecycle: ServerLifecycle;
  let images: ImageStore;
  let stopWatchingBases: (() => void) | undefined;
  const backend = opts.backend;

  return {
    get admission() { return lifecycle.admission; },
    serviceType: 'compute',
    prefix: '/compute/v2.1',
    migrate: (db) => { migrateServers(db); migrateImages(db); },
    routes(app: FastifyInstance, ctx: DaemonContext) {
      const servers = new ServerStore(ctx.db);
      images = new ImageStore(ctx.db, ctx.dataDir);
      lifecycle = new ServerLifecycle({ ctx, backend, servers, images, admission: new Admission(opts.maxServers, () => servers.countLive()),
        overlay: { maxBytes: opts.overlayMaxBytes, networks: opts.overlayNetworks, registryLogins: opts.registryLogins, registryLoginsByName: opts.registryLoginsByName } });
      lifecycle.handoff = opts.handoff?.(ctx, lifecycle);
      const base = (_req: FastifyRequest) => ctx.serviceUrl('compute');
      // Microversions: only 2.1 (406 for any other, 400 when malformed), checked before the route.
      app.addHook('onRequest', async (req) => { requestedComputeVersion(req.headers); });
      app.addHook('onSend', async (_req, reply) => {
        reply.header('openstack-api-version', 'compute 2.1').header('x-openstack-nova-api-version', '2.1').header('vary', 'OpenStack-API-Version, X-OpenStack-Nova-API-Version');
      });
      versionRoutes(app, base);
      flavorRoutes(app, ctx, base);
      serverRoutes(app, ctx, lifecycle, base);
      metadataRoutes(app, ctx, lifecycle);
      computeInfoRoutes(app, ctx, lifecycle);
      lifecycle.handoff?.routes(app, base);
    },
    rootRoutes: computeRootRoutes,
    async start(ctx: DaemonContext) {
      images.recover();
      syncBaseImages(images, backend);
      // Bases added or removed outside the API (the CLI on this data folder) show up without a restart.
      stopWatchingBases = backend.watchBases?.(() => {
        for (const c of syncBaseImages(images, backend)) {
          ctx.events.publish('images', { id: c.image.id, project_id: c.image.owner, visibility: c.image.visibility, change: c.change });
        }
      });
      await lifecycle.reconcile();
    },
    async stop() { stopWatchingBases?.(); await lifecycle.handoff?.stop(); (backend as { manager?: { close(): void } }).manager?.close(); },
  };
}
