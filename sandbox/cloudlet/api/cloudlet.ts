/**
 * Service type "cloudlet" (/cloudlet/v1): what OpenStack has no API for. Jobs and their progress
 * as server-sent events, and one general event stream for event-driven refresh of views.
 *   GET    /jobs                 the project's jobs, newest first
 *   GET    /jobs/{id}            one job
 *   GET    /jobs/{id}/events     SSE: `progress` events, then one `end` event, then the stream closes
 *   DELETE /jobs/{id}            cancel
 *   GET    /events               SSE: `change` events {topic, data, at} for the caller's project
 * A stream ends with `token-ended` {reason} when the caller's token expires or is revoked (sse.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { ApiModule, AuthContext, DaemonContext, JobRegistry, JobStreamEvent } from '../context';
import type { JobRecord } from '../jobs';
import type { LocalEventBus } from '../events';
import { openSse } from '../sse';
import { CloudletError } from '../../common/errors';
import type { Job } from '../../client/types';
import { cloudletSchemas as S } from './schemas/cloudlet';

export function jobView(j: JobRecord): Job {
  return {
    id: j.id, kind: j.kind, resource_id: j.resource_id, project_id: j.project_id, status: j.status,
    phase: j.phase, message: j.message, done: j.done, total: j.total, error: j.error, fault: j.fault, result: j.result,
    created_at: j.created_at, updated_at: j.updated_at,
  };
}

export function cloudletModule(jobs: JobRegistry, events: LocalEventBus): ApiModule {
  const visible = (a: AuthContext, id: string) => {
    const j = jobs.get(id);
    if (!j || (j.project_id !== a.projectId && !a.isAdmin)) throw new CloudletError('NotFound', `job ${id} not found`);
    return j;
  };
  return {
    serviceType: 'cloudlet',
    prefix: '/cloudlet/v1',
    migrate: () => {},
    routes(app: FastifyInstance, ctx: DaemonContext) {
      app.get('/jobs', { schema: S.listJobs }, async (req) => ({ jobs: jobs.list(ctx.auth(req).projectId).map(jobView) }));
      app.get<{ Params: { id: string } }>('/jobs/:id', { schema: S.showJob }, async (req) => ({ job: jobView(visible(ctx.auth(req), req.params.id)) }));
      app.delete<{ Params: { id: string } }>('/jobs/:id', { schema: S.cancelJob }, async (req, reply) => {
        visible(ctx.auth(req), req.params.id);
        if (!jobs.cancel(req.params.id)) throw new CloudletError('Conflict', `job ${req.params.id} is not running`);
        return reply.code(202).send();
      });
      app.get<{ Params: { id: string } }>('/jobs/:id/events', { schema: S.jobEvents }, async (req, reply) => {
        const a = ctx.auth(req);
        const j = visible(a, req.params.id);
        const sse = openSse(req, reply, { expiresAt: a.expiresAt, stillValid: () => ctx.stillValid(a) });
        // The current state first, so a late subscriber still sees where the job is.
        if (j.phase) sse.send('progress', { job: j.id, event: { phase: j.phase, message: j.message ?? undefined, done: j.done ?? undefined, total: j.total ?? undefined } });
        const finish = (rec: JobRecord) => {
          sse.send('end', { job: rec.id, status: rec.status, error: rec.error ?? undefined, fault: rec.fault ?? undefined, result: rec.result ?? undefined });
          sse.close();
        };
        if (!jobs.isRunning(j.id)) { finish(j); return; }
        const unsubscribe = jobs.subscribe(j.id, (e: JobStreamEvent) => {
          if (e.type === 'progress') sse.send('progress', { job: e.job, event: e.event });
          else { sse.send('end', { job: e.job, status: e.status, error: e.error, fault: e.fault, result: e.result }); sse.close(); }
        });
        // The job may have ended between the check and the subscription.
        if (!jobs.isRunning(j.id)) finish(jobs.get(j.id)!);
        await sse.closed;
        unsubscribe();
      });
      app.get('/events', { schema: S.events }, async (req, reply) => {
        const a = ctx.auth(req);
        const sse = openSse(req, reply, { expiresAt: a.expiresAt, stillValid: () => ctx.stillValid(a) });
        const unsubscribe = events.subscribe((e) => {
          // Events of no project (hardware inventory, anything unowned) go to admins only; a public
          // image's (a base) to everyone, who all see it.
          const owner = e.data.project_id;
          const forAll = e.topic === 'images' && e.data.visibility === 'public';
          if (!a.isAdmin && !forAll && (owner === undefined || owner === null || owner !== a.projectId)) return;
          sse.send('change', e);
        });
        await sse.closed;
        unsubscribe();
      });
    },
  };
}
