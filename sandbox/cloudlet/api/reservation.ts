/**
 * Reservation, Blazar v1 (device leases as CHI@Edge has them), under /reservation/v1:
 *   GET/POST /leases, GET/PUT/DELETE /leases/{id}
 *   GET /devices, /devices/{id}, /devices/allocations, /devices/{id}/allocation  (Chameleon's device API)
 * Leases belong to projects; another project's lease is 403, admins see all.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, AuthContext, DaemonContext } from '../context';
import { migrateDevices } from '../../devices/schema';
import { devicesFor, type DevicesService } from '../../devices/devicesService';
import { leaseToBlazar, type LeaseRow } from '../../devices/leaseStore';
import { parseLeaseCreate, parseLeaseUpdate } from '../../devices/leaseRequest';
import { publicView, usableBy } from '../../devices/deviceInventory';
import { formatLeaseDate } from '../../devices/leaseDates';
import { CloudletError } from '../../common/errors';
import { reservationSchemas as S } from './schemas/reservation';

type IdParams = { Params: { id: string } };

export function reservationModule(): ApiModule {
  let svc: DevicesService | undefined;
  return {
    serviceType: 'reservation',
    prefix: '/reservation/v1',
    migrate: migrateDevices,
    routes(app: FastifyInstance, ctx: DaemonContext) {
      const s = svc = devicesFor(ctx);
      leaseRoutes(app, ctx, s);
      deviceRoutes(app, ctx, s);
    },
    async start(ctx: DaemonContext) { await devicesFor(ctx).start(); },
    async stop() { await svc?.stop(); },
  };
}

/** Blazar's leases: list, create, show, update, delete. */
function leaseRoutes(app: FastifyInstance, ctx: DaemonContext, s: DevicesService): void {
  const body = async (l: LeaseRow) => {
    const d = s.leases.detail(l.id);
    return leaseToBlazar(d, await s.downDevices(d));
  };
  const allProjects = (req: FastifyRequest, a: AuthContext) => {
    const q = req.query as Record<string, string>;
    return a.isAdmin && ['1', 'true', 'True'].includes(q.all_projects ?? '');
  };

  app.get('/leases', { schema: S.listLeases }, async (req) => {
    const a = ctx.auth(req);
    const rows = s.leases.list(allProjects(req, a) ? null : a.projectId);
    return { leases: await Promise.all(rows.map(body)) };
  });
  app.post('/leases', { schema: S.createLease }, async (req, reply) => {
    const a = ctx.auth(req);
    const r = parseLeaseCreate(req.body, Date.now());
    const id = s.scheduler.create(r, { projectId: a.projectId, userId: a.userId });
    s.clock.poke();
    ctx.events.publish('leases', { id, status: 'PENDING', project_id: a.projectId });
    // A lease starting now is ACTIVE by the time the client sees it (as in Blazar).
    await s.clock.tick();
    return reply.code(201).send({ lease: await body(s.leases.findLease(id)!) });
  });
  app.get<IdParams>('/leases/:id', { schema: S.showLease }, async (req) => {
    const a = ctx.auth(req);
    return { lease: await body(s.leases.leaseFor(req.params.id, a.projectId, a.isAdmin)) };
  });
  app.put<IdParams>('/leases/:id', { schema: S.updateLease }, async (req) => {
    const a = ctx.auth(req);
    const l = s.leases.leaseFor(req.params.id, a.projectId, a.isAdmin);
    const raw = (req.body ?? {}) as Record<string, unknown>;
    const upd = parseLeaseUpdate('lease' in raw && typeof raw.lease === 'object' ? raw.lease : raw, Date.now(),
      { startAt: l.start_at, endAt: l.end_at, started: l.status !== 'PENDING' });
    s.scheduler.update(l, upd);
    s.clock.poke();
    ctx.events.publish('leases', { id: l.id, status: l.status, project_id: l.project_id });
    await s.clock.tick();
    return { lease: await body(s.leases.findLease(l.id)!) };
  });
  app.delete<IdParams>('/leases/:id', { schema: S.deleteLease }, async (req, reply) => {
    const a = ctx.auth(req);
    const l = s.leases.leaseFor(req.params.id, a.projectId, a.isAdmin);
    await s.lifecycle.delete(l.id);
    s.clock.poke();
    return reply.code(204).send();
  });
}

/** Devices as project members see them (no engine endpoints), and their allocations. */
function deviceRoutes(app: FastifyInstance, ctx: DaemonContext, s: DevicesService): void {
  const visible = (a: AuthContext) => s.inventory.list().filter((d) => a.isAdmin || usableBy(d, a.projectId));
  app.get('/devices', { schema: S.listDevices }, async (req) => {
    const a = ctx.auth(req);
    const list = visible(a);
    return { devices: await Promise.all(list.map(async (d) => publicView(d, await s.health.check(d.id)))) };
  });
  app.get('/devices/allocations', { schema: S.allocations }, async (req) => {
    const a = ctx.auth(req);
    return { allocations: allocations(s, a, visible(a).map((d) => d.id)) };
  });
  app.get<IdParams>('/devices/:id', { schema: S.showDevice }, async (req) => {
    const a = ctx.auth(req);
    const d = visible(a).find((x) => x.id === req.params.id || x.name === req.params.id);
    if (!d) throw new CloudletError('NotFound', `device ${req.params.id} not found`);
    return { device: publicView(d, await s.health.check(d.id)) };
  });
  app.get<IdParams>('/devices/:id/allocation', { schema: S.deviceAllocation }, async (req) => {
    const a = ctx.auth(req);
    const d = visible(a).find((x) => x.id === req.params.id || x.name === req.params.id);
    if (!d) throw new CloudletError('NotFound', `device ${req.params.id} not found`);
    return { allocation: allocations(s, a, [d.id])[0] };
  });
}

/** Per device, the windows it is held (pending and active leases). Other projects' leases show as busy, unnamed. */
function allocations(s: DevicesService, a: AuthContext, deviceIds: string[]) {
  const rows = s.leases.activeAllocations();
  return deviceIds.map((id) => {
    const d = s.inventory.get(id);
    return {
      resource_id: id, name: d.name, machine_name: d.properties.machine_name,
      reservations: rows.filter((r) => r.device_id === id).map((r) => {
        const mine = a.isAdmin || r.project_id === a.projectId;
        return {
          id: mine ? r.reservation_id : null, lease_id: mine ? r.lease_id : null, lease_name: mine ? r.lease_name : null,
          status: r.status, mine: r.project_id === a.projectId,
          start_date: formatLeaseDate(r.start_at), end_date: formatLeaseDate(r.end_at),
        };
      }),
    };
  });
}
