/**
 * Nova's informational routes that standard clients call around servers: the version list at the
 * service root (`nova version-list`), microversion negotiation (2.1 only: 406 beyond, 400 when
 * malformed), limits, quota sets, availability zones and key pairs.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, DaemonContext } from '../context';
import type { ServerLifecycle } from '../servers/serverLifecycle';
import { KeypairStore, type Keypair } from '../servers/keypairs';
import { findFlavor } from '../servers/flavors';
import { CloudletError } from '../../common/errors';
import { computeInfoSchemas as S } from './schemas/computeInfo';

export const COMPUTE_VERSION = '2.1';
/** Nova's per-server metadata limit (quota metadata_items), enforced on metadata writes. */
export const MAX_SERVER_METADATA = 128;
/** Key pairs per user (quota key_pairs). */
export const MAX_KEYPAIRS = 100;

/**
 * The microversion a request asks for (OpenStack-API-Version: compute X.Y, or the legacy
 * X-OpenStack-Nova-API-Version): none or "latest" is 2.1; a malformed one is 400; any other than
 * 2.1 is 406, as Nova answers a version outside its range.
 */
export function requestedComputeVersion(headers: FastifyRequest['headers']): string {
  const h = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(',') : v);
  const modern = /(?:^|,)\s*compute\s+([^\s,]+)/i.exec(h(headers['openstack-api-version']) ?? '')?.[1];
  const v = modern ?? h(headers['x-openstack-nova-api-version'])?.trim();
  if (!v || v.toLowerCase() === 'latest') return COMPUTE_VERSION;
  if (!/^\d+\.\d+$/.test(v)) throw new CloudletError('BadInput', `Version ${v} is not a valid API version: use MAJOR.MINOR, e.g. 2.1`);
  if (v !== COMPUTE_VERSION) {
    throw new CloudletError('BadInput', `Version ${v} is not supported by the API. Minimum is ${COMPUTE_VERSION} and maximum is ${COMPUTE_VERSION}.`, { status: 406 });
  }
  return v;
}

/** GET /compute/ (the service root): Nova's version list. */
export function computeRootRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/', { schema: S.root }, async () => {
    const href = `${ctx.serviceUrl('compute')}/`;
    const v = (id: string, status: string, version: string, min: string) => ({
      id, status, version, min_version: min, updated: id === 'v2.0' ? '2011-01-21T11:33:21Z' : '2013-07-23T11:33:21Z',
      links: [{ rel: 'self', href: id === 'v2.0' ? href.replace(/v2\.1\/$/, 'v2/') : href }],
    });
    return { versions: [v('v2.0', 'SUPPORTED', '', ''), v('v2.1', 'CURRENT', COMPUTE_VERSION, COMPUTE_VERSION)] };
  });
}

/** vCPUs and RAM (MiB) of a project's live servers, from their flavors. */
function usage(lifecycle: ServerLifecycle, projectId: string): { instances: number; cores: number; ram: number } {
  const live = lifecycle.servers.list(projectId).filter((r) => ['BUILD', 'ACTIVE', 'PAUSED', 'SHUTOFF'].includes(r.status));
  const flavors = live.map((r) => findFlavor(r.flavor_id));
  return { instances: live.length, cores: flavors.reduce((n, f) => n + (f?.vcpus ?? 0), 0), ram: flavors.reduce((n, f) => n + (f?.ram ?? 0), 0) };
}

export function computeInfoRoutes(app: FastifyInstance, ctx: DaemonContext, lifecycle: ServerLifecycle): void {
  const keypairs = new KeypairStore(ctx.db);
  const maxServers = () => lifecycle.admission.maxServers;

  app.get('/limits', { schema: S.limits }, async (req) => {
    const a = ctx.auth(req);
    const u = usage(lifecycle, a.projectId);
    return {
      limits: {
        rate: [],
        absolute: {
          maxTotalInstances: maxServers(), totalInstancesUsed: u.instances, maxTotalCores: -1, totalCoresUsed: u.cores,
          maxTotalRAMSize: -1, totalRAMUsed: u.ram, maxServerMeta: MAX_SERVER_METADATA, maxImageMeta: 128, maxPersonality: 0,
          maxPersonalitySize: 0, maxTotalKeypairs: MAX_KEYPAIRS, maxServerGroups: 0, maxServerGroupMembers: 0, maxSecurityGroups: 0,
          maxSecurityGroupRules: 0, maxTotalFloatingIps: 0, totalFloatingIpsUsed: 0, totalSecurityGroupsUsed: 0, totalServerGroupsUsed: 0,
        },
      },
    };
  });

  /** The quota set of a project the caller may see: its own, or any for an admin. */
  const quotaFor = (a: AuthContext, projectId: string) => {
    if (projectId !== a.projectId && !a.isAdmin) throw new CloudletError('Forbidden', `Policy doesn't allow os_compute_api:os-quota-sets:show to be performed on project ${projectId}.`);
    const limits = { instances: maxServers(), cores: -1, ram: -1, key_pairs: MAX_KEYPAIRS, metadata_items: MAX_SERVER_METADATA,
      injected_files: 0, injected_file_content_bytes: 0, injected_file_path_bytes: 0, server_groups: 0, server_group_members: 0 };
    return { id: projectId, limits };
  };
  app.get<{ Params: { projectId: string } }>('/os-quota-sets/:projectId', { schema: S.quota }, async (req) => {
    const q = quotaFor(ctx.auth(req), req.params.projectId);
    return { quota_set: { id: q.id, ...q.limits } };
  });
  app.get<{ Params: { projectId: string } }>('/os-quota-sets/:projectId/defaults', { schema: S.quota }, async (req) => {
    const q = quotaFor(ctx.auth(req), req.params.projectId);
    return { quota_set: { id: q.id, ...q.limits } };
  });
  app.get<{ Params: { projectId: string } }>('/os-quota-sets/:projectId/detail', { schema: S.quota }, async (req) => {
    const a = ctx.auth(req);
    const q = quotaFor(a, req.params.projectId);
    const u = usage(lifecycle, q.id);
    const inUse: Record<string, number> = { instances: u.instances, cores: u.cores, ram: u.ram, key_pairs: q.id === a.projectId ? keypairs.list(a.userId).length : 0 };
    return { quota_set: { id: q.id, ...Object.fromEntries(Object.entries(q.limits).map(([k, limit]) => [k, { limit, in_use: inUse[k] ?? 0, reserved: 0 }])) } };
  });

  // One zone, "nova" (what every server's OS-EXT-AZ:availability_zone says).
  const zone = (detail: boolean) => ({
    zoneName: 'nova', zoneState: { available: true },
    hosts: detail ? { cloudlet: { 'nova-compute': { available: true, active: true, updated_at: new Date().toISOString().replace(/Z$/, '') } } } : null,
  });
  app.get('/os-availability-zone', { schema: S.zones }, async (req) => { ctx.auth(req); return { availabilityZoneInfo: [zone(false)] }; });
  app.get('/os-availability-zone/detail', { schema: S.zones }, async (req) => { ctx.requireAdmin(req); return { availabilityZoneInfo: [zone(true)] }; });

  const keypairView = (k: Keypair) => ({ name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint, type: k.type });
  app.get('/os-keypairs', { schema: S.keypairs }, async (req) => ({ keypairs: keypairs.list(ctx.auth(req).userId).map((k) => ({ keypair: keypairView(k) })) }));
  app.get<{ Params: { name: string } }>('/os-keypairs/:name', { schema: S.keypair }, async (req) => {
    const k = keypairs.get(ctx.auth(req).userId, req.params.name);
    return { keypair: { ...keypairView(k), user_id: k.userId, created_at: k.createdAt.replace(/Z$/, ''), deleted: false, deleted_at: null, updated_at: null, id: 0 } };
  });
  app.post('/os-keypairs', { schema: S.createKeypair }, async (req) => {
    const a = ctx.auth(req);
    const b = (req.body as { keypair: { name: string; public_key?: string } }).keypair;
    const k = await keypairs.create(a.userId, b.name, b.public_key, MAX_KEYPAIRS);
    return { keypair: { ...keypairView(k), user_id: k.userId, ...(k.privateKey ? { private_key: k.privateKey } : {}) } };
  });
  app.delete<{ Params: { name: string } }>('/os-keypairs/:name', { schema: S.deleteKeypair }, async (req, reply) => {
    keypairs.delete(ctx.auth(req).userId, req.params.name);
    return reply.code(202).send();
  });
}
