/**
 * Glance v2 (/image): images for base VMs and overlays with the OpenStack++ properties
 * (is_cloudlet, cloudlet_type, base_sha256_uuid), upload (PUT .../file), download with Range.
 * Base images are advertised publicly (a cloudlet's base IDs); their data lives in the base store.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import { checkTags, ImageStore, imageView, migrateImages, type ImageRow } from '../imageStore';
import { IMAGE_SCHEMA, IMAGES_SCHEMA } from './imageSchemaDocuments';
import { CloudletError } from '../../common/errors';
import type { ImagePage } from '../../client/types';
import { imageSchemas as S } from './schemas/image';
import { imageDataRoutes, type ImageDataOptions } from './imageData';

/** The upload cap and the base importer (imageData.ts). */
export type ImageModuleOptions = ImageDataOptions;

type TagParams = { Params: { id: string; tag: string } };

const FILTERS_IGNORED = new Set(['limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'member_status', 'os_hidden']);

export function imageModule(opts: ImageModuleOptions): ApiModule {
  let store: ImageStore;
  const prefix = '/image';
  return {
    serviceType: 'image',
    prefix,
    migrate: (db) => migrateImages(db),
    routes(app: FastifyInstance, ctx: DaemonContext) {
      store = new ImageStore(ctx.db, ctx.dataDir);
      versionRoutes(app, ctx);
      imageRoutes(app, ctx, store, prefix);
      imageDataRoutes(app, ctx, store, opts);
      tagAndSchemaRoutes(app, ctx, store);
    },
    async start() { store.recover(); },
  };
}

/** Glance's version documents. */
function versionRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const versions = (_req: FastifyRequest) => {
    const href = `${ctx.serviceUrl('image')}/v2/`;
    return { versions: ['v2.9', 'v2.8', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0'].map((id, i) => ({ id, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href }] })) };
  };
  app.get('/', { schema: S.versions }, async (req, reply) => reply.code(300).send(versions(req)));
  app.get('/versions', { schema: S.versions }, async (req) => versions(req));
  app.get('/v2', { schema: S.versions }, async (req) => versions(req));
}

/** Images: list, create, show, update (JSON Patch), delete. */
function imageRoutes(app: FastifyInstance, ctx: DaemonContext, store: ImageStore, prefix: string): void {
  app.get('/v2/images', { schema: S.list }, async (req) => imagePage(store.list(ctx.auth(req)), req.query as Record<string, string>));

  app.post('/v2/images', { schema: S.create }, async (req, reply) => {
    const a = ctx.auth(req);
    const b = req.body as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new CloudletError('BadInput', 'request body must be a JSON object of image fields');
    if ((b.visibility === 'public' || b.cloudlet_type === 'cloudlet_base_disk') && !a.isAdmin) {
      throw new CloudletError('Forbidden', b.visibility === 'public' ? 'publicizing an image needs the admin role' : 'importing a base VM needs the admin role');
    }
    const fields = { ...b };
    if (b.cloudlet_type === 'cloudlet_base_disk') fields.visibility ??= 'public';
    if (typeof b.cloudlet_type === 'string') fields.is_cloudlet ??= 'True';
    const r = store.create(a.projectId, fields);
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'created' });
    return reply.code(201).header('location', `${ctx.publicUrl}${prefix}/v2/images/${r.id}`).send(imageView(r));
  });

  app.get<{ Params: { id: string } }>('/v2/images/:id', { schema: S.show }, async (req) => imageView(store.get(ctx.auth(req), req.params.id)));

  app.patch<{ Params: { id: string } }>('/v2/images/:id', { schema: S.update }, async (req) => {
    const a = ctx.auth(req);
    store.getOwned(a, req.params.id);
    const ops = req.body as Array<{ op: string; path: string; value?: unknown }>;
    if (!Array.isArray(ops)) throw new CloudletError('BadInput', 'body must be a JSON Patch array');
    const set: Record<string, unknown> = {};
    const remove: string[] = [];
    let tags: string[] | undefined;
    for (const op of ops) {
      const key = String(op.path ?? '').replace(/^\//, '');
      if (key === 'tags' && (op.op === 'add' || op.op === 'replace')) { tags = checkTags(op.value); continue; }
      if (!key || key.includes('/')) throw new CloudletError('BadInput', `unsupported patch path ${op.path}`);
      if (op.op === 'add' || op.op === 'replace') set[key] = op.value;
      else if (op.op === 'remove') remove.push(key);
      else throw new CloudletError('BadInput', `unsupported patch op ${op.op}`);
    }
    if ((set.visibility === 'public') && !a.isAdmin) throw new CloudletError('Forbidden', 'publicizing an image needs the admin role');
    if (set.cloudlet_type === 'cloudlet_base_disk' && !a.isAdmin) throw new CloudletError('Forbidden', 'importing a base VM needs the admin role');
    if (tags) store.setTags(req.params.id, tags);
    const r = store.update(req.params.id, { set, remove });
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'updated' });
    return imageView(r);
  });

  app.delete<{ Params: { id: string } }>('/v2/images/:id', { schema: S.remove }, async (req, reply) => {
    const a = ctx.auth(req);
    const r = store.getOwned(a, req.params.id);
    if (r.protected) throw new CloudletError('Forbidden', `Image ${r.id} is protected and cannot be deleted.`);
    store.delete(r.id);
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'deleted' });
    return reply.code(204).send();
  });
}

/** Tags one at a time (glance image-tag-update/-delete, openstack image set --tag); the schemas every image names. */
function tagAndSchemaRoutes(app: FastifyInstance, ctx: DaemonContext, store: ImageStore): void {
  app.put<TagParams>('/v2/images/:id/tags/:tag', { schema: S.tag }, async (req, reply) => {
    const r = store.getOwned(ctx.auth(req), req.params.id);
    store.addTag(r.id, req.params.tag);
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'updated' });
    return reply.code(204).send();
  });
  app.delete<TagParams>('/v2/images/:id/tags/:tag', { schema: S.tag }, async (req, reply) => {
    const r = store.getOwned(ctx.auth(req), req.params.id);
    store.removeTag(r.id, req.params.tag);
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'updated' });
    return reply.code(204).send();
  });
  // "schema": "/v2/schemas/image" in every image; glanceclient reads these before any call.
  app.get('/v2/schemas/image', { schema: S.schemaDocument }, async (req) => { ctx.auth(req); return IMAGE_SCHEMA; });
  app.get('/v2/schemas/images', { schema: S.schemaDocument }, async (req) => { ctx.auth(req); return IMAGES_SCHEMA; });
}

/** One page of the images listed, filtered by field or property (Glance's list query). */
function imagePage(rows: ImageRow[], q: Record<string, string>): ImagePage {
  for (const [k, v] of Object.entries(q)) {
    if (FILTERS_IGNORED.has(k)) continue;
    if (k === 'tag') { rows = rows.filter((r) => r.tags.includes(v)); continue; }
    rows = rows.filter((r) => {
      const val = k in r && k !== 'properties' ? (r as any)[k] : r.properties[k];
      return String(val) === v;
    });
  }
  const limit = Math.min(Number(q.limit ?? 25) || 25, 1000);
  if (q.marker) {
    const i = rows.findIndex((r) => r.id === q.marker);
    if (i < 0) throw new CloudletError('BadInput', `marker ${q.marker} not found`);
    rows = rows.slice(i + 1);
  }
  const page = rows.slice(0, limit);
  const body: ImagePage = { images: page.map(imageView), first: '/v2/images', schema: '/v2/schemas/images' };
  if (rows.length > limit) {
    const params = new URLSearchParams({ ...q, marker: page[page.length - 1].id });
    body.next = `/v2/images?${params}`;
  }
  return body;
}
