/**
 * Glance v2 (/image): images for base VMs and overlays with the OpenStack++ properties
 * (is_cloudlet, cloudlet_type, base_sha256_uuid), upload (PUT .../file), download with Range.
 * Base images are advertised publicly (a cloudlet's base IDs); their data lives in the base store.
 */
import * as fs from 'fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'stream';
import type { ApiModule, DaemonContext } from '../context';
import { ImageStore, imageView, migrateImages, type ImageRow } from '../imageStore';
import { CloudletError } from '../../common/errors';
import { OverlayReader } from '../../overlay/overlayReader';
import type { ImagePage } from '../../client/types';
import { imageSchemas as S } from './schemas/image';

export interface ImageModuleOptions {
  /** Largest image upload accepted (bytes). */
  maxUploadBytes: number;
  /** Import an uploaded base bundle file (admin); returns the base ID. Set by the compute side. */
  importBase?: (file: string) => Promise<string>;
}

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
      const versions = (_req: FastifyRequest) => {
        const href = `${ctx.serviceUrl('image')}/v2/`;
        return { versions: ['v2.9', 'v2.8', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0'].map((id, i) => ({ id, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href }] })) };
      };
      app.get('/', { schema: S.versions }, async (req, reply) => reply.code(300).send(versions(req)));
      app.get('/versions', { schema: S.versions }, async (req) => versions(req));
      app.get('/v2', { schema: S.versions }, async (req) => versions(req));

      app.get('/v2/images', { schema: S.list }, async (req) => {
        const a = ctx.auth(req);
        const q = req.query as Record<string, string>;
        let rows = store.list(a);
        for (const [k, v] of Object.entries(q)) {
          if (FILTERS_IGNORED.has(k)) continue;
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
      });

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
        for (const op of ops) {
          const key = String(op.path ?? '').replace(/^\//, '');
          if (!key || key.includes('/')) throw new CloudletError('BadInput', `unsupported patch path ${op.path}`);
          if (op.op === 'add' || op.op === 'replace') set[key] = op.value;
          else if (op.op === 'remove') remove.push(key);
          else throw new CloudletError('BadInput', `unsupported patch op ${op.op}`);
        }
        if ((set.visibility === 'public') && !a.isAdmin) throw new CloudletError('Forbidden', 'publicizing an image needs the admin role');
        if (set.cloudlet_type === 'cloudlet_base_disk' && !a.isAdmin) throw new CloudletError('Forbidden', 'importing a base VM needs the admin role');
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

      app.put<{ Params: { id: string } }>('/v2/images/:id/file', { schema: S.upload }, async (req, reply) => {
        const a = ctx.auth(req);
        const r = store.getOwned(a, req.params.id);
        // Uploading a base disk imports it into this cloudlet's base store: admins only, however the image got its type.
        if (r.properties.cloudlet_type === 'cloudlet_base_disk' && !a.isAdmin) throw new CloudletError('Forbidden', 'importing a base VM needs the admin role');
        const body = req.body as Readable | undefined;
        if (!body || typeof (body as Readable).pipe !== 'function') throw new CloudletError('BadInput', 'image data must be sent as application/octet-stream', { status: 415 });
        const declared = Number(req.headers['content-length']);
        if (declared > opts.maxUploadBytes) throw new CloudletError('BadInput', `image data of ${declared} bytes is over the limit of ${opts.maxUploadBytes}`, { status: 413 });
        await store.upload(r.id, body, opts.maxUploadBytes, (file) => checkUpload(r, file));
        ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'active' });
        return reply.code(204).send();
      });

      app.get<{ Params: { id: string } }>('/v2/images/:id/file', { schema: S.download }, async (req, reply) => {
        const r = store.get(ctx.auth(req), req.params.id);
        const file = store.filePath(r.id);
        if (r.status !== 'active' || !fs.existsSync(file)) return reply.code(204).send();
        return sendFile(req, reply, file, r);
      });
    },
    async start() { store.recover(); },
  };

  /** Uploaded overlays must parse and name their base; uploaded bases are imported into the base store. */
  async function checkUpload(r: ImageRow, file: string): Promise<Record<string, string> | void> {
    if (r.properties.cloudlet_type === 'cloudlet_overlay') {
      const o = OverlayReader.open(file);
      try { return { base_sha256_uuid: o.manifest.baseId, overlay_id: o.overlayId }; } finally { o.close(); }
    }
    if (r.properties.cloudlet_type === 'cloudlet_base_disk') {
      if (!opts.importBase) throw new CloudletError('BadInput', 'this cloudlet cannot import base bundles');
      return { base_sha256_uuid: await opts.importBase(file) };
    }
  }
}

/** Streams a file, honouring a single `Range: bytes=a-b` (206 / 416) like Glance does. */
function sendFile(req: FastifyRequest, reply: FastifyReply, file: string, r: ImageRow): FastifyReply {
  const size = fs.statSync(file).size;
  const range = req.headers.range;
  reply.header('accept-ranges', 'bytes');
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start = m && m[1] !== '' ? Number(m[1]) : NaN;
    let end = m && m[2] !== '' ? Number(m[2]) : size - 1;
    if (m && m[1] === '' && m[2] !== '') { start = Math.max(0, size - Number(m[2])); end = size - 1; }
    if (!m || !(start >= 0) || start >= size || end < start) {
      return reply.code(416).header('content-range', `bytes */${size}`).send({ code: '416 Requested Range Not Satisfiable', title: 'Requested Range Not Satisfiable', message: `range ${range} is outside 0-${size - 1}`, cloudlet_error: { code: 'BadInput' } });
    }
    end = Math.min(end, size - 1);
    return reply.code(206).header('content-type', 'application/octet-stream').header('content-range', `bytes ${start}-${end}/${size}`).header('content-length', end - start + 1)
      .send(fs.createReadStream(file, { start, end }));
  }
  if (r.checksum) reply.header('content-md5', r.checksum);
  return reply.code(200).header('content-type', 'application/octet-stream').header('content-length', size).send(fs.createReadStream(file));
}
