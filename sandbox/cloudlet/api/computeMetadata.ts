/**
 * Nova's server metadata items (`openstack server set/unset --property`, `nova meta`):
 *   POST /servers/{id}/metadata {metadata}      merge, 200 with all items
 *   PUT  /servers/{id}/metadata {metadata}      replace all, 200
 *   GET  /servers/{id}/metadata/{key}           {meta: {key: value}}
 *   PUT  /servers/{id}/metadata/{key} {meta}    one item, 200
 *   DELETE /servers/{id}/metadata/{key}         204
 * (GET /servers/{id}/metadata is with the other server routes.)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DaemonContext } from '../context';
import type { ServerLifecycle } from '../servers/serverLifecycle';
import { CloudletError } from '../../common/errors';
import { MAX_SERVER_METADATA } from './computeInfo';
import { computeInfoSchemas as S } from './schemas/computeInfo';

type IdParams = { Params: { id: string } };
type KeyParams = { Params: { id: string; key: string } };

export function metadataRoutes(app: FastifyInstance, ctx: DaemonContext, lifecycle: ServerLifecycle): void {
  const write = (replace: boolean) => async (req: FastifyRequest<IdParams>) => {
    const r = lifecycle.get(ctx.auth(req), req.params.id);
    const items = (req.body as { metadata: Record<string, string> }).metadata;
    return { metadata: lifecycle.setMetadata(r, items, { replace, max: MAX_SERVER_METADATA }) };
  };
  app.post<IdParams>('/servers/:id/metadata', { schema: S.setMetadata }, write(false));
  app.put<IdParams>('/servers/:id/metadata', { schema: S.setMetadata }, write(true));

  app.get<KeyParams>('/servers/:id/metadata/:key', { schema: S.metadataItem }, async (req) => {
    const r = lifecycle.get(ctx.auth(req), req.params.id);
    if (!Object.hasOwn(r.metadata, req.params.key)) throw new CloudletError('NotFound', `Metadata item was not found: ${req.params.key}`);
    return { meta: { [req.params.key]: r.metadata[req.params.key] } };
  });
  app.put<KeyParams>('/servers/:id/metadata/:key', { schema: S.setMetadataItem }, async (req) => {
    const r = lifecycle.get(ctx.auth(req), req.params.id);
    const meta = (req.body as { meta: Record<string, string> }).meta;
    if (Object.keys(meta).length !== 1 || !(req.params.key in meta)) throw new CloudletError('BadInput', 'Request body and URI mismatch: meta must hold exactly the key in the path');
    lifecycle.setMetadata(r, meta, { replace: false, max: MAX_SERVER_METADATA });
    return { meta };
  });
  app.delete<KeyParams>('/servers/:id/metadata/:key', { schema: S.deleteMetadataItem }, async (req, reply) => {
    lifecycle.deleteMetadata(lifecycle.get(ctx.auth(req), req.params.id), req.params.key);
    return reply.code(204).send();
  });
}
