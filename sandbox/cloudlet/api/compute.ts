/**
 * Nova v2.1 (/compute/v2.1): servers, flavors and the cloudlet actions.
 * - create with imageRef = a base image: resume the base VM (no boot);
 * - create with metadata.overlay_url: VM synthesis (fetch, verify, apply, launch) as a job;
 * - actions: pause, unpause, os-stop, cloudlet-overlay-finish, cloudlet-handoff.
 * Status values and OS-EXT-STS fields as upstream. Each long operation is a job whose id is in
 * the server's OS-EXT-CLOUDLET:job_id, its progress on /cloudlet/v1/jobs/{id}/events.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, AuthContext, DaemonContext } from '../context';
import type { VmBackend } from '../vmBackend';
import { ServerStore, migrateServers, type ServerRow } from '../serverStore';
import { ImageStore, migrateImages } from '../imageStore';
import { checkOverlayUrl, overlayUrlTrust } from '../overlayFetch';
import { openHttpOverlay, openOciOverlay } from '../overlaySource';
import type { AddressPolicy } from '../../common/addressPolicy';
import { CloudletError, describeError } from '../../common/errors';
import type { Server, ServerCreated } from '../../client/types';
import { storePaths } from '../../common/paths';
import { normalizeFingerprint } from '../../client/transport';
import type { HandoffService } from '../../handoff/service';

export interface ComputeOptions {
  backend: VmBackend;
  maxServers: number;
  overlayMaxBytes: number;
  /** Where an overlay_url may lead (default: public and loopback addresses). */
  overlayNetworks?: AddressPolicy;
  handoff?: (ctx: DaemonContext, servers: ServerStore) => HandoffService;
}

export const FLAVORS = [
  { id: '1', name: 'cloudlet.small', ram: 512, vcpus: 1, disk: 4 },
  { id: '2', name: 'cloudlet.medium', ram: 1024, vcpus: 1, disk: 8 },
  { id: '3', name: 'cloudlet.large', ram: 2048, vcpus: 2, disk: 16 },
];

const POWER = { NOSTATE: 0, RUNNING: 1, PAUSED: 3, SHUTDOWN: 4 };
const VM_STATE: Record<string, [string, number]> = {
  BUILD: ['building', POWER.NOSTATE], ACTIVE: ['active', POWER.RUNNING], PAUSED: ['paused', POWER.PAUSED],
  SHUTOFF: ['stopped', POWER.SHUTDOWN], ERROR: ['error', POWER.NOSTATE], DELETED: ['deleted', POWER.NOSTATE],
};

function nova(t: string | null): string | null { return t ? t.replace(/\.\d+Z$/, 'Z') : null; }

export function serverView(r: ServerRow, base: string): Server {
  const [vmState, power] = VM_STATE[r.status] ?? ['error', 0];
  const self = `${base}/servers/${r.id}`;
  return {
    id: r.id, name: r.name, status: r.status, tenant_id: r.project_id, user_id: r.user_id, metadata: r.metadata,
    hostId: '', image: r.image_id ? { id: r.image_id, links: [{ rel: 'bookmark', href: `${base}/images/${r.image_id}` }] } : '',
    flavor: { id: r.flavor_id, links: [{ rel: 'bookmark', href: `${base}/flavors/${r.flavor_id}` }] },
    created: nova(r.created_at), updated: nova(r.updated_at), addresses: {}, accessIPv4: '', accessIPv6: '',
    links: [{ rel: 'self', href: self }, { rel: 'bookmark', href: self }],
    'OS-DCF:diskConfig': 'MANUAL', progress: r.progress, 'OS-EXT-AZ:availability_zone': 'nova', config_drive: '', key_name: null,
    'OS-SRV-USG:launched_at': r.launched_at ? r.launched_at.replace(/Z$/, '').replace(/(\.\d{6})\d*$/, '$1') : null, 'OS-SRV-USG:terminated_at': null,
    'OS-EXT-STS:task_state': r.task_state, 'OS-EXT-STS:vm_state': vmState, 'OS-EXT-STS:power_state': power,
    security_groups: [{ name: 'default' }], 'os-extended-volumes:volumes_attached': [],
    ...(r.fault ? { fault: r.fault } : {}),
    'OS-EXT-CLOUDLET:job_id': r.job_id, 'OS-EXT-CLOUDLET:base_id': r.base_id, 'OS-EXT-CLOUDLET:ports': r.ports,
  };
}

function parsePorts(v: unknown): number[] {
  if (v === undefined || v === '') return [];
  const ports = String(v).split(',').map((s) => Number(s.trim()));
  if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new CloudletError('BadInput', `metadata.ports must be a comma-separated list of guest TCP ports, got ${String(v)}`);
  return ports;
}

export function computeModule(opts: ComputeOptions): ApiModule {
  let servers: ServerStore;
  let images: ImageStore;
  let handoff: HandoffService | undefined;
  const prefix = '/compute/v2.1';
  const backend = opts.backend;

  return {
    serviceType: 'compute',
    prefix,
    migrate: (db) => { migrateServers(db); migrateImages(db); },
    routes(app: FastifyInstance, ctx: DaemonContext) {
      servers = new ServerStore(ctx.db);
      images = new ImageStore(ctx.db, ctx.dataDir);
      handoff = opts.handoff?.(ctx, servers);
      const base = (_req: FastifyRequest) => ctx.serviceUrl('compute');
      const publish = (r: ServerRow, change: string) => ctx.events.publish('servers', { id: r.id, project_id: r.project_id, status: r.status, change });
      const version = (req: FastifyRequest) => ({
        id: 'v2.1', status: 'CURRENT', version: '2.1', min_version: '2.1', updated: '2013-07-23T11:33:21Z',
        links: [{ rel: 'self', href: `${base(req)}/` }],
        'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
      });
      app.addHook('onSend', async (_req, reply) => {
        reply.header('openstack-api-version', 'compute 2.1').header('x-openstack-nova-api-version', '2.1').header('vary', 'OpenStack-API-Version, X-OpenStack-Nova-API-Version');
      });
      app.get('/', async (req) => ({ version: version(req) }));

      // ---- flavors
      const flavorView = (f: typeof FLAVORS[number], req: FastifyRequest) => ({
        ...f, 'OS-FLV-EXT-DATA:ephemeral': 0, 'OS-FLV-DISABLED:disabled': false, 'os-flavor-access:is_public': true, swap: '', rxtx_factor: 1.0,
        links: [{ rel: 'self', href: `${base(req)}/flavors/${f.id}` }],
      });
      app.get('/flavors', async (req) => { ctx.auth(req); return { flavors: FLAVORS.map((f) => ({ id: f.id, name: f.name, links: flavorView(f, req).links })) }; });
      app.get('/flavors/detail', async (req) => { ctx.auth(req); return { flavors: FLAVORS.map((f) => flavorView(f, req)) }; });
      app.get<{ Params: { id: string } }>('/flavors/:id', async (req) => {
        ctx.auth(req);
        const f = FLAVORS.find((x) => x.id === req.params.id);
        if (!f) throw new CloudletError('NotFound', `Flavor ${req.params.id} could not be found.`);
        return { flavor: flavorView(f, req) };
      });
      app.get<{ Params: { id: string } }>('/flavors/:id/os-extra_specs', async (req) => { ctx.auth(req); return { extra_specs: {} }; });

      // ---- servers
      const listed = (req: FastifyRequest, a: AuthContext) => {
        const q = req.query as Record<string, string>;
        let rows = servers.list(a.isAdmin && q.all_tenants ? undefined : a.projectId);
        // Nova reads name as a regular expression; here it is a plain substring match, so no client
        // pattern can cost exponential time (ReDoS) or fail to compile.
        if (q.name) { const part = String(q.name); rows = rows.filter((r) => r.name.includes(part)); }
        if (q.status) rows = rows.filter((r) => r.status === q.status.toUpperCase());
        return rows;
      };
      app.get('/servers', async (req) => {
        const a = ctx.auth(req);
        return { servers: listed(req, a).map((r) => ({ id: r.id, name: r.name, links: serverView(r, base(req)).links })) };
      });
      app.get('/servers/detail', async (req) => ({ servers: listed(req, ctx.auth(req)).map((r) => serverView(r, base(req))) }));
      app.get<{ Params: { id: string } }>('/servers/:id', async (req) => ({ server: serverView(servers.get(ctx.auth(req), req.params.id), base(req)) }));

      app.post('/servers', async (req, reply) => {
        const a = ctx.auth(req);
        const s = (req.body as any)?.server;
        if (!s || typeof s !== 'object') throw new CloudletError('BadInput', "Invalid input for field/attribute server. Value: missing 'server' object");
        if (typeof s.name !== 'string' || !s.name.trim() || s.name.length > 255) throw new CloudletError('BadInput', "Invalid input for field/attribute name: a non-empty name of at most 255 characters is required");
        const metadata: Record<string, string> = {};
        for (const [k, v] of Object.entries((s.metadata ?? {}) as Record<string, unknown>)) {
          if (typeof v !== 'string') throw new CloudletError('BadInput', `Invalid input for field/attribute metadata: value of ${k} must be a string`);
          metadata[k] = v;
        }
        const flavorId = String(s.flavorRef ?? '1').replace(/^.*\/flavors\//, '');
        if (!FLAVORS.some((f) => f.id === flavorId)) throw new CloudletError('BadInput', `Flavor ${flavorId} could not be found.`);
        const ports = parsePorts(metadata.ports);
        const quotaCheck = () => {
          if (servers.countLive() >= opts.maxServers) {
            throw new CloudletError('Forbidden', `Quota exceeded for instances: this cloudlet runs at most ${opts.maxServers} servers`);
          }
        };
        quotaCheck();
        // Checked again with the insert, in one transaction: other creates may have run while this one awaited.
        const insertWithinQuota = ctx.db.transaction((fields: Parameters<typeof servers.insert>[0]) => { quotaCheck(); return servers.insert(fields); });
        let row: ServerRow;
        if (metadata.overlay_url !== undefined) {
          const url = checkOverlayUrl(metadata.overlay_url);
          const fetchOptions = { trust: overlayUrlTrust(url.href, metadata, ctx.peerTrust), policy: opts.overlayNetworks, log: ctx.log };
          const source = url.protocol === 'oci:' ? await openOciOverlay(metadata.overlay_url, ctx.dataDir, opts.overlayMaxBytes, fetchOptions)
            : await openHttpOverlay(url.href, authHeadersFor(url.href, ctx.publicUrl, a.token), opts.overlayMaxBytes, fetchOptions);
          if (!backend.hasBase(source.baseId)) {
            await source.close();
            throw new CloudletError('MissingBase', `overlay ${source.overlayId.slice(0, 12)} needs base ${source.baseId}, which this cloudlet does not hold; import that base first`);
          }
          try {
            row = insertWithinQuota({ name: s.name, project_id: a.projectId, user_id: a.userId, status: 'BUILD', task_state: 'scheduling', image_id: String(s.imageRef ?? ''),
              flavor_id: flavorId, base_id: source.baseId, metadata, ports: {} });
          } catch (e) { await source.close(); throw e; }
          const jobId = ctx.jobs.start('synthesis', a.projectId, row.id, async (job) => {
            const tmp = path.join(storePaths(ctx.dataDir).tmp, `overlay-${row.id}`);
            try {
              servers.update(row.id, { task_state: 'downloading' });
              job.progress({ phase: 'download', done: 0 });
              const overlay = await source.prepare(tmp, (done, total) => job.progress({ phase: 'download', done, total }), job.signal);
              servers.update(row.id, { task_state: 'spawning', progress: 50 });
              const vm = await backend.synthesize(overlay, { name: `srv-${row.id}`, ports }, (e) => job.progress(e), job.signal);
              return activate(row.id, vm.id, vm.ports);
            } catch (e) {
              failServer(row.id, e);
              throw e;
            } finally {
              fs.rmSync(tmp, { force: true });
              await source.close();
            }
          });
          row = servers.update(row.id, { job_id: jobId });
        } else {
          const imageId = String(s.imageRef ?? '').replace(/^.*\/images\//, '');
          if (!imageId) throw new CloudletError('BadInput', 'imageRef is required (a base image) unless metadata.overlay_url is given');
          const img = images.get(a, imageId);
          const baseId = img.properties.base_sha256_uuid;
          if (img.properties.cloudlet_type !== 'cloudlet_base_disk' || !baseId) {
            throw new CloudletError('BadInput', `image ${imageId} is not a cloudlet base VM (cloudlet_type cloudlet_base_disk); to run an overlay pass metadata.overlay_url`);
          }
          if (!backend.hasBase(baseId)) throw new CloudletError('MissingBase', `base ${baseId} of image ${imageId} is not on this cloudlet`);
          row = insertWithinQuota({ name: s.name, project_id: a.projectId, user_id: a.userId, status: 'BUILD', task_state: 'spawning', image_id: imageId,
            flavor_id: flavorId, base_id: baseId, metadata, ports: {} });
          const jobId = ctx.jobs.start('resume', a.projectId, row.id, async (job) => {
            try {
              const vm = await backend.resume(baseId, { name: `srv-${row.id}`, ports }, (e) => job.progress(e), job.signal);
              return activate(row.id, vm.id, vm.ports);
            } catch (e) { failServer(row.id, e); throw e; }
          });
          row = servers.update(row.id, { job_id: jobId });
        }
        publish(row, 'created');
        const created: ServerCreated = {
          id: row.id, links: serverView(row, base(req)).links, adminPass: '', 'OS-DCF:diskConfig': 'MANUAL', security_groups: [{ name: 'default' }],
          'OS-EXT-CLOUDLET:job_id': row.job_id,
          ...(metadata.overlay_url ? { synthesis: { return: 'started', job_id: row.job_id } } : {}),
        };
        return reply.code(202).header('location', `${base(req)}/servers/${row.id}`).send({ server: created });
      });

      const activate = (id: string, vmId: string, ports: Record<string, string>) => {
        // A server deleted while building: drop the VM we just made.
        const cur = servers.getRow(id);
        if (!cur) { void backend.delete(vmId).catch(() => {}); throw new CloudletError('Cancelled', 'server was deleted while it was being built'); }
        const r = servers.update(id, { status: 'ACTIVE', task_state: null, vm_id: vmId, ports, progress: 100, launched_at: new Date().toISOString() });
        publish(r, 'active');
        return { server_id: id, vm_id: vmId, ports };
      };
      const failServer = (id: string, e: unknown) => {
        if (!servers.getRow(id)) return;
        const r = servers.fail(id, e);
        publish(r, 'error');
      };

      app.delete<{ Params: { id: string } }>('/servers/:id', async (req, reply) => {
        const r = servers.get(ctx.auth(req), req.params.id);
        if (r.task_state === 'migrating') throw new CloudletError('Conflict', `Cannot 'delete' instance ${r.id} while it is in task_state migrating`);
        if (r.job_id && ctx.jobs instanceof Object && 'cancel' in ctx.jobs) (ctx.jobs as any).cancel(r.job_id);
        servers.update(r.id, { status: 'DELETED', task_state: 'deleting' });
        if (r.vm_id) await backend.delete(r.vm_id).catch((e) => ctx.log.warn(`server ${r.id}: deleting its VM: ${describeError(e)}`));
        publish({ ...r, status: 'DELETED' }, 'deleted');
        return reply.code(204).send();
      });

      app.get<{ Params: { id: string } }>('/servers/:id/metadata', async (req) => ({ metadata: servers.get(ctx.auth(req), req.params.id).metadata }));

      app.post<{ Params: { id: string } }>('/servers/:id/action', async (req, reply) => {
        const a = ctx.auth(req);
        const r = servers.get(a, req.params.id);
        const body = req.body as Record<string, any> | undefined;
        const keys = body && typeof body === 'object' ? Object.keys(body) : [];
        if (keys.length !== 1) throw new CloudletError('BadInput', 'an action body has exactly one key, the action name');
        const action = keys[0];
        const needVm = (states: string[]) => {
          if (!states.includes(r.status) || !r.vm_id || r.task_state) {
            throw new CloudletError('Conflict', `Cannot '${action}' instance ${r.id} while it is in vm_state ${VM_STATE[r.status]?.[0] ?? r.status}${r.task_state ? ` (task_state ${r.task_state})` : ''}`);
          }
          return r.vm_id;
        };
        switch (action) {
          case 'pause': {
            await backend.pause(needVm(['ACTIVE']));
            publish(servers.update(r.id, { status: 'PAUSED' }), 'paused');
            return reply.code(202).send();
          }
          case 'unpause': {
            await backend.unpause(needVm(['PAUSED']));
            publish(servers.update(r.id, { status: 'ACTIVE' }), 'active');
            return reply.code(202).send();
          }
          case 'os-stop': {
            await backend.stop(needVm(['ACTIVE', 'PAUSED']));
            publish(servers.update(r.id, { status: 'SHUTOFF' }), 'stopped');
            return reply.code(202).send();
          }
          case 'cloudlet-overlay-finish': {
            const vmId = needVm(['ACTIVE', 'PAUSED']);
            const name = String(body![action]?.['overlay-name'] ?? `${r.name}-overlay`);
            const img = images.create(a.projectId, { name, disk_format: 'raw', container_format: 'bare', is_cloudlet: 'True', cloudlet_type: 'cloudlet_overlay', base_sha256_uuid: r.base_id ?? '' });
            images.setStatus(img.id, 'saving');
            servers.update(r.id, { task_state: 'image_snapshot' });
            const jobId = ctx.jobs.start('overlay', a.projectId, r.id, async (job) => {
              const out = path.join(storePaths(ctx.dataDir).tmp, `image-${img.id}-overlay`);
              try {
                const info = await backend.makeOverlay(vmId, out, (e) => job.progress(e), job.signal);
                images.adoptFile(img.id, out);
                images.update(img.id, { set: { base_sha256_uuid: info.baseId, overlay_id: info.overlayId } });
                ctx.events.publish('images', { id: img.id, project_id: a.projectId, change: 'active' });
                return { image_id: img.id, overlay_id: info.overlayId, bytes: info.bytes };
              } catch (e) {
                fs.rmSync(out, { force: true });
                images.setStatus(img.id, 'killed');
                throw e;
              } finally {
                if (servers.getRow(r.id)) servers.update(r.id, { task_state: null });
              }
            });
            return reply.code(202).send({ 'overlay-id': img.id, job_id: jobId });
          }
          case 'cloudlet-handoff': {
            if (!handoff) throw new CloudletError('BadInput', 'handoff is not available on this cloudlet', { status: 501 });
            needVm(['ACTIVE']);
            const p = body![action] ?? {};
            if (typeof p.handoff_url !== 'string' || !/^https?:\/\//.test(p.handoff_url)) throw new CloudletError('BadInput', 'cloudlet-handoff needs handoff_url: the destination compute endpoint (http or https)');
            if (typeof p.dest_token !== 'string' || !p.dest_token) throw new CloudletError('BadInput', 'cloudlet-handoff needs dest_token: a token valid at the destination');
            if (p.dest_tls_fingerprint !== undefined && typeof p.dest_tls_fingerprint !== 'string') throw new CloudletError('BadInput', 'cloudlet-handoff: dest_tls_fingerprint must be a SHA-256 fingerprint string');
            const destFingerprint = p.dest_tls_fingerprint === undefined ? undefined : normalizeFingerprint(p.dest_tls_fingerprint);
            const jobId = handoff.start(a, r, { handoffUrl: p.handoff_url, destToken: p.dest_token, destVmName: typeof p.dest_vmname === 'string' ? p.dest_vmname : r.name, destFingerprint });
            return reply.code(202).send({ job_id: jobId });
          }
          default:
            throw new CloudletError('BadInput', `action ${action} is not supported here`);
        }
      });

      handoff?.routes(app, base);
    },

    async start(ctx: DaemonContext) {
      images.recover();
      // Bases held by the VM layer are advertised as public base images (one per base ID).
      for (const b of backend.bases()) {
        if (images.basesWithId(b.baseId).length) continue;
        const img = images.create('admin', { name: b.name, visibility: 'public', disk_format: 'raw', container_format: 'bare', is_cloudlet: 'True',
          cloudlet_type: 'cloudlet_base_disk', base_sha256_uuid: b.baseId, min_ram: Math.ceil(b.ramBytes / 1048576) });
        images.setStatus(img.id, 'active');
      }
      // Restart: adopt running VMs, then make every server's row say what is true.
      const live = new Map((await backend.adopt()).map((v) => [v.id, v]));
      for (const r of servers.list()) {
        const job = r.job_id ? (ctx.jobs as any).get?.(r.job_id) : undefined;
        let vm = r.vm_id ? live.get(r.vm_id) : undefined;
        if (r.status === 'BUILD') {
          // Its job was cut by the stop: whatever it half-built is removed, the server is ERROR.
          if (r.vm_id) await backend.delete(r.vm_id).catch(() => {});
          servers.fail(r.id, `interrupted: the cloudlet daemon stopped while this server was being built${job?.error ? ` (${job.error})` : ''}`);
          continue;
        }
        if (r.task_state) {
          // An operation on a built server (overlay-finish, handoff) was cut: the server keeps its VM.
          // A handoff pauses the VM for its last round; the source keeps the VM until the destination
          // confirms, so a handoff cut by the stop resumes it here.
          // If the handoff had sent its last round, the destination may already run the VM: the
          // handoff service asks it (in the background) before this copy is resumed or removed.
          if (r.task_state === 'migrating' && handoff?.recover?.(r, r.status === 'ACTIVE' && vm?.state === 'paused')) continue;
          if (r.task_state === 'migrating' && r.status === 'ACTIVE' && vm?.state === 'paused') {
            await backend.unpause(vm.id).catch((e) => ctx.log.warn(`server ${r.id}: resuming its VM after a cut handoff: ${describeError(e)}`));
            vm = backend.get(vm.id) ?? vm;
          }
          servers.update(r.id, { task_state: null });
        }
        if (r.status === 'ACTIVE' || r.status === 'PAUSED') {
          if (!vm || vm.state === 'missing' || vm.state === 'stopped') servers.fail(r.id, 'the VM process ended while the cloudlet daemon was down');
          else servers.update(r.id, { status: vm.state === 'paused' ? 'PAUSED' : 'ACTIVE', ports: vm.ports });
        }
      }
      // Servers marked DELETED with a VM left over (crash mid-delete) lose it now.
      for (const v of live.values()) {
        const owner = ctx.db.prepare("SELECT id FROM servers WHERE vm_id = ? AND status NOT IN ('DELETED', 'ERROR')").get(v.id);
        if (!owner) await backend.delete(v.id).catch(() => {});
      }
    },
    async stop() { await handoff?.stop(); (backend as { manager?: { close(): void } }).manager?.close(); },
  };
}

/** Our own Glance URLs need the caller's token; other URLs get no credentials. */
function authHeadersFor(url: string, publicUrl: string, token: string): Record<string, string> {
  return url.startsWith(publicUrl + '/') ? { 'x-auth-token': token } : {};
}
