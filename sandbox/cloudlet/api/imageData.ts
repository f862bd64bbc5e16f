/**
 * Glance v2 image data: upload (PUT /v2/images/{id}/file; overlays are parsed, base bundles
 * imported) and download with a single Range (GET /v2/images/{id}/file).
 */
import * as fs from 'fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'stream';
import type { DaemonContext } from '../context';
import type { ImageStore, ImageRow } from '../imageStore';
import { CloudletError } from '../../common/errors';
import { OverlayReader } from '../../overlay/overlayReader';
import { imageSchemas as S } from './schemas/image';

export interface ImageDataOptions {
  /** Largest image upload accepted (bytes). */
  maxUploadBytes: number;
  /** Import an uploaded base bundle file (admin); returns the base ID. Set by the compute side. */
  importBase?: (file: string) => Promise<string>;
}

export function imageDataRoutes(app: FastifyInstance, ctx: DaemonContext, store: ImageStore, opts: ImageDataOptions): void {
  app.put<{ Params: { id: string } }>('/v2/images/:id/file', { schema: S.upload }, async (req, reply) => {
    const a = ctx.auth(req);
    const r = store.getOwned(a, req.params.id);
    // Uploading a base disk imports it into this cloudlet's base store: admins only, however the image got its type.
    if (r.properties.cloudlet_type === 'cloudlet_base_disk' && !a.isAdmin) throw new CloudletError('Forbidden', 'importing a base VM needs the admin role');
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== 'function') throw new CloudletError('BadInput', 'image data must be sent as application/octet-stream', { status: 415 });
    const declared = Number(req.headers['content-length']);
    if (declared > opts.maxUploadBytes) throw new CloudletError('BadInput', `image data of ${declared} bytes is over the limit of ${opts.maxUploadBytes}`, { status: 413 });
    await store.upload(r.id, body, opts.maxUploadBytes, (file) => checkUpload(opts, r, file));
    ctx.events.publish('images', { id: r.id, project_id: r.owner, change: 'active' });
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>('/v2/images/:id/file', { schema: S.download }, async (req, reply) => {
    const r = store.get(ctx.auth(req), req.params.id);
    const file = store.filePath(r.id);
    if (r.status !== 'active' || !fs.existsSync(file)) return reply.code(204).send();
    return sendFile(req, reply, file, r);
  });
}

/** Uploaded overlays must parse and name their base; uploaded bases are imported into the base store. */
async function checkUpload(opts: ImageDataOptions, r: ImageRow, file: string): Promise<Record<string, string> | void> {
  if (r.properties.cloudlet_type === 'cloudlet_overlay') {
    const o = OverlayReader.open(file);
    try { return { base_sha256_uuid: o.manifest.baseId, overlay_id: o.overlayId }; } finally { o.close(); }
  }
  if (r.properties.cloudlet_type === 'cloudlet_base_disk') {
    if (!opts.importBase) throw new CloudletError('BadInput', 'this cloudlet cannot import base bundles');
    return { base_sha256_uuid: await opts.importBase(file) };
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
