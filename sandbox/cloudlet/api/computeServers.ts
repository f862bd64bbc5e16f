/**
 * Nova's servers: list, show, create, delete, metadata and actions. Each route parses its request
 * (servers/serverRequest.ts), calls the ServerLifecycle and answers in Nova's shape.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, DaemonContext } from '../context';
import type { ServerRow } from '../serverStore';
import type { ServerCreated } from '../../client/types';
import type { ServerLifecycle } from '../servers/serverLifecycle';
import { parseServerAction, parseServerCreate } from '../servers/serverRequest';
import { serverLinks, serverView } from '../servers/serverView';
import { computeSchemas as S } from './schemas/compute';

type Base = (req: FastifyRequest) => string;
type IdParams = { Params: { id: string } };

/** The caller's servers (admins with all_tenants: everyone's), filtered by name (a substring) and status. */
function listed(lifecycle: ServerLifecycle, req: FastifyRequest, a: AuthContext): ServerRow[] {
  const q = req.query as Record<string, string>;
  let rows = lifecycle.servers.list(a.isAdmin && q.all_tenants ? undefined : a.projectId);
  // Nova reads name as a regular expression; here it is a plain substring match, so no client
  // pattern can cost exponential time (ReDoS) or fail to compile.
  if (q.name) { const part = String(q.name); rows = rows.filter((r) => r.name.includes(part)); }
  if (q.status) rows = rows.filter((r) => r.status === String(q.status).toUpperCase());
  return rows;
}

export function serverRoutes(app: FastifyInstance, ctx: DaemonContext, lifecycle: ServerLifecycle, base: Base): void {
  app.get('/servers', { schema: S.listServers }, async (req) => ({
    servers: listed(lifecycle, req, ctx.auth(req)).map((r) => ({ id: r.id, name: r.name, links: serverLinks(r.id, base(req)) })),
  }));
  app.get('/servers/detail', { schema: S.listServers }, async (req) => ({ servers: listed(lifecycle, req, ctx.auth(req)).map((r) => serverView(r, base(req))) }));
  app.get<IdParams>('/servers/:id', { schema: S.showServer }, async (req) => ({ server: serverView(lifecycle.get(ctx.auth(req), req.params.id), base(req)) }));
  app.get<IdParams>('/servers/:id/metadata', { schema: S.serverMetadata }, async (req) => ({ metadata: lifecycle.get(ctx.auth(req), req.params.id).metadata }));

  app.post('/servers', { schema: S.createServer }, async (req, reply) => {
    const a = ctx.auth(req);
    const r = await lifecycle.create(a, parseServerCreate(req.body));
    const created: ServerCreated = {
      id: r.id, links: serverLinks(r.id, base(req)), adminPass: '', 'OS-DCF:diskConfig': 'MANUAL', security_groups: [{ name: 'default' }],
      'OS-EXT-CLOUDLET:job_id': r.job_id,
      ...(r.metadata.overlay_url ? { synthesis: { return: 'started', job_id: r.job_id } } : {}),
    };
    return reply.code(202).header('location', `${base(req)}/servers/${r.id}`).send({ server: created });
  });

  app.delete<IdParams>('/servers/:id', { schema: S.deleteServer }, async (req, reply) => {
    await lifecycle.delete(lifecycle.get(ctx.auth(req), req.params.id));
    return reply.code(204).send();
  });

  app.post<IdParams>('/servers/:id/action', { schema: S.action }, async (req, reply) => {
    const a = ctx.auth(req);
    const r = lifecycle.get(a, req.params.id);
    const act = parseServerAction(req.body);
    switch (act.action) {
      case 'cloudlet-overlay-finish': {
        const { imageId, jobId } = lifecycle.finishOverlay(a, r, act.overlayName);
        return reply.code(202).send({ 'overlay-id': imageId, job_id: jobId });
      }
      case 'cloudlet-handoff':
        return reply.code(202).send({ job_id: lifecycle.startHandoff(a, r, act.handoff) });
      case 'os-start':
        await lifecycle.start(r);
        return reply.code(202).send();
      case 'reboot':
        await lifecycle.power(r, act.hard ? 'reboot-hard' : 'reboot-soft');
        return reply.code(202).send();
      case 'os-getConsoleOutput':
        return { output: lifecycle.consoleOutput(r, act.length) };
      default:
        await lifecycle.power(r, act.action);
        return reply.code(202).send();
    }
  });
}
