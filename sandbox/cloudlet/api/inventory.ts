/**
 * Inventory (Doni-like), admin only, under /inventory/v1:
 *   GET/POST /hardware, GET/PATCH (JSON-Patch)/DELETE /hardware/{id}, POST /hardware/{id}/sync (re-ping)
 * The hardware object carries the engine endpoint; only admins reach this API.
 */
import type { FastifyInstance } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import { migrateDevices } from '../../devices/schema';
import { devicesFor, type DevicesService } from '../../devices/devicesService';
import { adminView, type EnrollInput } from '../../devices/deviceInventory';
import { inventorySchemas as S } from './schemas/inventory';

type IdParams = { Params: { id: string } };

export function inventoryModule(): ApiModule {
  let svc: DevicesService | undefined;
  return {
    serviceType: 'inventory',
    prefix: '/inventory/v1',
    migrate: migrateDevices,
    routes(app: FastifyInstance, ctx: DaemonContext) {
      const s = svc = devicesFor(ctx);
      const view = async (id: string) => adminView(s.inventory.get(id), await s.health.check(id));

      const list = async (req: Parameters<DaemonContext['auth']>[0]) => {
        ctx.requireAdmin(req);
        return { hardware: await Promise.all(s.inventory.list().map((d) => view(d.id))) };
      };
      app.get('/hardware', { schema: S.list }, list);
      app.get('/hardware/', { schema: S.list }, list);
      const enroll = async (req: Parameters<DaemonContext['auth']>[0], reply: import('fastify').FastifyReply) => {
        const a = ctx.requireAdmin(req);
        const d = s.inventory.enroll((req.body ?? {}) as EnrollInput, a.projectId);
        ctx.events.publish('devices', { id: d.id, name: d.name, action: 'enrolled' });
        return reply.code(201).send(await view(d.id));
      };
      app.post('/hardware', { schema: S.enroll }, enroll);
      app.post('/hardware/', { schema: S.enroll }, enroll);
      app.get<IdParams>('/hardware/:id', { schema: S.show }, async (req) => {
        ctx.requireAdmin(req);
        return view(s.inventory.get(req.params.id).id);
      });
      app.patch<IdParams>('/hardware/:id', { schema: S.update }, async (req) => {
        ctx.requireAdmin(req);
        const d = s.inventory.patch(req.params.id, req.body);
        s.health.forget(d.id);
        ctx.events.publish('devices', { id: d.id, name: d.name, action: 'updated' });
        return view(d.id);
      });
      app.delete<IdParams>('/hardware/:id', { schema: S.remove }, async (req, reply) => {
        ctx.requireAdmin(req);
        const d = s.inventory.get(req.params.id);
        s.inventory.remove(d.id);
        s.health.forget(d.id);
        ctx.events.publish('devices', { id: d.id, name: d.name, action: 'removed' });
        return reply.code(204).send();
      });
      app.post<IdParams>('/hardware/:id/sync', { schema: S.sync }, async (req) => {
        ctx.requireAdmin(req);
        const d = s.inventory.get(req.params.id);
        s.health.forget(d.id);
        return view(d.id);
      });
    },
    async start(ctx: DaemonContext) { await devicesFor(ctx).start(); },
    async stop() { await svc?.stop(); },
  };
}
