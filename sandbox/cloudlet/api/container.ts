/**
 * Container, Zun v1 (microversions up to 1.41, header `OpenStack-API-Version: container X.Y`),
 * under /container/v1: containers run only on a device the caller's project holds through an
 * ACTIVE lease reservation (`hints.reservation`).
 *   POST /containers[?run=true]  GET /containers  GET|DELETE /containers/{id}
 *   POST /containers/{id}/start|stop  GET /containers/{id}/logs  POST /containers/{id}/execute
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, AuthContext, DaemonContext } from '../context';
import { migrateDevices } from '../../devices/schema';
import { devicesFor, type DevicesService } from '../../devices/devicesService';
import { containerToZun, type Caller, type ContainerRow } from '../../devices/containerService';
import { CloudletError } from '../../common/errors';
import { containerSchemas as S } from './schemas/container';

export const MIN_VERSION = '1.1';
export const MAX_VERSION = '1.41';

type IdParams = { Params: { id: string } };

function parse(v: string): [number, number] {
  const [a, b] = v.split('.').map(Number);
  return [a, b];
}

function cmp(x: string, y: string): number {
  const [a, b] = parse(x), [c, d] = parse(y);
  return a !== c ? a - c : b - d;
}

/** The microversion a request asks for: header absent -> the minimum (as Zun), "latest" -> max, out of range -> 406. */
export function requestedVersion(header: string | string[] | undefined): string {
  const h = Array.isArray(header) ? header.join(',') : header;
  if (!h) return MIN_VERSION;
  const m = /(?:^|,)\s*container\s+([^\s,]+)/i.exec(h);
  if (!m) return MIN_VERSION;
  if (m[1].toLowerCase() === 'latest') return MAX_VERSION;
  if (!/^\d+\.\d+$/.test(m[1])) throw new CloudletError('BadInput', `invalid API version '${m[1]}': use MAJOR.MINOR`);
  if (cmp(m[1], MIN_VERSION) < 0 || cmp(m[1], MAX_VERSION) > 0) {
    throw new CloudletError('BadInput', `Version ${m[1]} is not supported by the API. Minimum is ${MIN_VERSION} and maximum is ${MAX_VERSION}.`, { status: 406 });
  }
  return m[1];
}

const truthy = (v: unknown) => ['1', 'true', 'True', 'yes'].includes(String(v));

export function containerModule(): ApiModule {
  let svc: DevicesService | undefined;
  return {
    serviceType: 'container',
    prefix: '/container/v1',
    migrate: migrateDevices,
    routes(app: FastifyInstance, ctx: DaemonContext) {
      const s = svc = devicesFor(ctx);
      app.addHook('onRequest', async (req, reply) => {
        const v = requestedVersion(req.headers['openstack-api-version']);
        void reply.header('OpenStack-API-Version', `container ${v}`).header('Vary', 'OpenStack-API-Version');
      });
      const caller = (req: FastifyRequest): Caller => {
        const a: AuthContext = ctx.auth(req);
        return { projectId: a.projectId, userId: a.userId, isAdmin: a.isAdmin };
      };
      const base = () => `${ctx.publicUrl}/container/v1`;
      const show = (c: ContainerRow) => containerToZun(c, s.inventory.find(c.device_id)?.name ?? c.device_id, base());

      app.post('/containers', { schema: S.create }, async (req, reply) => {
        const q = req.query as Record<string, string>;
        const c = await s.containers.create(caller(req), req.body, truthy(q.run));
        return reply.code(202).send(show(c));
      });
      app.get('/containers', { schema: S.list }, async (req) => {
        const c = caller(req);
        const q = req.query as Record<string, string>;
        const rows = s.containers.list(c, truthy(q.all_projects));
        const fresh = await Promise.all(rows.map((r) => s.containers.get(c, r.id).catch(() => r)));
        return { containers: fresh.map(show), next: null };
      });
      app.get<IdParams>('/containers/:id', { schema: S.show }, async (req) => {
        const q = req.query as Record<string, string>;
        return show(await s.containers.get(caller(req), req.params.id, truthy(q.all_projects)));
      });
      app.post<IdParams>('/containers/:id/start', { schema: S.start }, async (req, reply) => {
        await s.containers.start(caller(req), req.params.id);
        return reply.code(202).send();
      });
      app.post<IdParams>('/containers/:id/stop', { schema: S.stop }, async (req, reply) => {
        const q = req.query as Record<string, string>;
        const t = q.timeout !== undefined ? Number(q.timeout) : 10;
        if (!Number.isFinite(t) || t < 0) throw new CloudletError('BadInput', 'timeout must be a number of seconds');
        await s.containers.stop(caller(req), req.params.id, t);
        return reply.code(202).send();
      });
      app.get<IdParams>('/containers/:id/logs', { schema: S.logs }, async (req, reply) => {
        const q = req.query as Record<string, string>;
        const tail = q.tail === undefined || q.tail === 'all' ? undefined : Number(q.tail);
        if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0)) throw new CloudletError('BadInput', 'tail must be a whole number or "all"');
        const text = await s.containers.logs(caller(req), req.params.id, {
          stdout: q.stdout === undefined ? true : truthy(q.stdout), stderr: q.stderr === undefined ? true : truthy(q.stderr),
          timestamps: truthy(q.timestamps), tail, since: q.since !== undefined ? Number(q.since) : undefined,
        });
        // Zun answers with the log text as a JSON string.
        return reply.type('application/json').send(JSON.stringify(text));
      });
      app.post<IdParams>('/containers/:id/execute', { schema: S.execute }, async (req) => {
        const q = req.query as Record<string, string>;
        const b = (req.body ?? {}) as Record<string, unknown>;
        const r = await s.containers.execute(caller(req), req.params.id, b.command ?? q.command);
        return { output: r.output, exit_code: r.exit_code, exec_id: null, url: null };
      });
      app.delete<IdParams>('/containers/:id', { schema: S.remove }, async (req, reply) => {
        const q = req.query as Record<string, string>;
        await s.containers.delete(caller(req), req.params.id, { force: truthy(q.force), stop: truthy(q.stop) });
        return reply.code(204).send();
      });
    },
    // Zun's root document: zunclient reads it (at the endpoint minus /v1) to settle on a microversion.
    rootRoutes(app: FastifyInstance, ctx: DaemonContext) {
      app.get('/', { schema: S.root }, async () => {
        const v1 = { id: 'v1', links: [{ href: `${ctx.serviceUrl('container')}/`, rel: 'self' }], status: 'CURRENT', max_version: MAX_VERSION, min_version: MIN_VERSION };
        return { name: 'OpenStack Zun API', description: 'Zun is an OpenStack project which aims to provide containers service.', versions: [v1], default_version: v1 };
      });
    },
    async start(ctx: DaemonContext) { await devicesFor(ctx).start(); },
    async stop() { await svc?.stop(); },
  };
}

