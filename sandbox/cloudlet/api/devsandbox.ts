/**
 * Service type "cloudlet-sandbox" (/sandbox/v1): what the editor needs from the local sandbox daemon
 * beyond OpenStack's API. Added by the extension work (issue 5); remote cloudlets may leave it out.
 *   GET  /servers/{id}/console   the server VM's serial console output as a stream (octet-stream):
 *                                the recent console log first, then live output
 *   POST /servers/{id}/console   keystrokes for the console (raw body), 204
 *   POST /builds                 {build: {folder, name?}}: cloudlet.yaml in `folder` -> overlay image
 *                                (a job: resume, copy, install, start, ready, overlay). Admin only: it
 *                                reads a folder of the daemon's host. A failed or cancelled build
 *                                leaves no image and no sandbox behind. Its VM counts against max_servers.
 *   POST /overlays/{imageId}/publish  {publish: {reference, username?, password?, ca?}}: pushes the
 *                                overlay image to an OCI registry (sandbox/registry publishOverlay) as
 *                                a job with progress; when done the image gets the properties
 *                                cloudlet_published_ref (oci://HOST/REPO:TAG) and cloudlet_published_digest
 *                                (oci://HOST/REPO@sha256:...). Credentials are used for this push only:
 *                                never stored, logged or put in the job. Without them the daemon user's
 *                                Docker credentials file is used (docs/registry.md).
 *   POST /bases                  {base: {name, source: test-guest | debian | image, ...}}: a new base VM
 *                                as a job with progress (admin only; its VM counts against max_servers;
                                see baseCreate.ts)
 */
import * as fs from 'fs';
import * as path from 'path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import { ServerStore } from '../serverStore';
import { ImageStore } from '../imageStore';
import { ConsoleHub, readBody, tail } from '../consoleHub';
import { CloudletError } from '../../common/errors';
import { storePaths } from '../../common/paths';
import type { SandboxManager } from '../../sandboxes/sandboxManager';
import { loadBuildFile } from '../../build/buildFile';
import { runBuild } from '../../build/build';
import { Credentials, parseReference, publishOverlay, plainHttpSetting, readCaFile } from '../../registry';
import { parseProfile } from '../../overlay/recompress';
import { baseCreateRoute } from './baseCreate';
import { holdPlaceFor, startOrRelease, type Admission } from '../servers/admission';
import { devSandboxSchemas as S } from './schemas/devsandbox';

export function devSandboxModule(o: { manager: SandboxManager; admission: () => Admission }): ApiModule {
  const hubs = new Map<string, ConsoleHub>();
  return {
    serviceType: 'cloudlet-sandbox',
    prefix: '/sandbox/v1',
    migrate: () => {},
    routes(app: FastifyInstance, ctx: DaemonContext) {
      const images = new ImageStore(ctx.db, ctx.dataDir);
      app.addContentTypeParser('text/plain', (_req, payload, done) => done(null, payload));
      consoleRoutes(app, ctx, o.manager, hubs);
      buildRoutes(app, ctx, o.manager, images, o.admission);
      baseCreateRoute(app, ctx, { bases: o.manager.bases, images, admission: o.admission });
      publishRoutes(app, ctx, images);
    },
  };
}

/** The console of a server's VM: its output as a stream (recent log, then live), keystrokes in. */
function consoleRoutes(app: FastifyInstance, ctx: DaemonContext, manager: SandboxManager, hubs: Map<string, ConsoleHub>): void {
  const servers = new ServerStore(ctx.db);
  const consoleOf = (vmId: string) => {
    const info = manager.get(vmId);
    let hub = hubs.get(vmId);
    if (!hub) { hub = new ConsoleHub(info.consoleSocket, () => hubs.delete(vmId)); hubs.set(vmId, hub); }
    return { hub, log: path.join(info.dir, 'console.log') };
  };
  const vmOf = (req: FastifyRequest, id: string) => {
    const r = servers.get(ctx.auth(req), id);
    if (!r.vm_id || (r.status !== 'ACTIVE' && r.status !== 'PAUSED')) throw new CloudletError('Conflict', `server ${id} has no running VM (status ${r.status})`);
    return r.vm_id;
  };

  app.get<{ Params: { id: string } }>('/servers/:id/console', { schema: S.console }, async (req, reply) => {
    const { hub, log } = consoleOf(vmOf(req, req.params.id));
    const stop = await hub.watch((b) => { reply.raw.write(b); });
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    reply.raw.write(tail(log, 2048));
    await new Promise<void>((resolve) => { req.raw.on('close', resolve); reply.raw.on('close', resolve); });
    stop();
  });

  app.post<{ Params: { id: string } }>('/servers/:id/console', { schema: S.typeConsole }, async (req, reply) => {
    const { hub } = consoleOf(vmOf(req, req.params.id));
    await hub.write(await readBody(req.body, 64 * 1024));
    return reply.code(204).send();
  });
}

/** Builds an overlay image from a folder with cloudlet.yaml (admin: it reads the daemon host's files). */
function buildRoutes(app: FastifyInstance, ctx: DaemonContext, manager: SandboxManager, images: ImageStore, admission: () => Admission): void {
  app.post('/builds', { schema: S.build }, async (req, reply) => {
    const a = ctx.requireAdmin(req);
    const b = (req.body as any)?.build;
    if (!b || typeof b.folder !== 'string' || !path.isAbsolute(b.folder)) throw new CloudletError('BadInput', 'build.folder must be an absolute path of a folder with cloudlet.yaml');
    const spec = loadBuildFile(b.folder);  // schema errors answer 400 at once, with line:col
    const name = typeof b.name === 'string' && b.name.trim() ? b.name.trim() : (spec.name ?? path.basename(b.folder));
    // The build's sandbox VM holds a place under max_servers until the job ends, however it ends.
    const slot = holdPlaceFor(admission(), `build ${name}`);
    const jobId = startOrRelease(slot, () => ctx.jobs.start('build', a.projectId, undefined, async (job) => {
      const out = path.join(storePaths(ctx.dataDir).tmp, `image-build-${job.id}.overlay`);
      try {
        const r = await runBuild(manager, spec, { outFile: out, removeSandbox: true, signal: job.signal, progress: (e) => job.progress(e) });
        // Only now, complete, does the overlay become an image: a cancelled build lists nothing.
        const img = images.create(a.projectId, { name, disk_format: 'raw', container_format: 'bare', is_cloudlet: 'True', cloudlet_type: 'cloudlet_overlay',
          base_sha256_uuid: r.overlay.manifest.baseId, overlay_id: r.overlay.overlayId });
        images.adoptFile(img.id, out);
        ctx.events.publish('images', { id: img.id, project_id: a.projectId, change: 'active' });
        return { image_id: img.id, overlay_id: r.overlay.overlayId, bytes: r.overlay.bytes, timings: r.timings, discard: r.overlay.discard };
      } finally {
        fs.rmSync(out, { force: true });
        slot.release();
      }
    }));
    return reply.code(202).send({ job_id: jobId });
  });
}

/** Pushes an overlay image to an OCI registry (a job); credentials live in the job's closure only. */
function publishRoutes(app: FastifyInstance, ctx: DaemonContext, images: ImageStore): void {
  app.post<{ Params: { id: string } }>('/overlays/:id/publish', { schema: S.publish }, async (req, reply) => {
    const a = ctx.auth(req);
    const img = images.getOwned(a, req.params.id);
    if (img.properties.cloudlet_type !== 'cloudlet_overlay') throw new CloudletError('BadInput', `image ${img.id} is not an overlay (cloudlet_type ${img.properties.cloudlet_type ?? 'unset'})`);
    if (img.status !== 'active') throw new CloudletError('Conflict', `overlay ${img.name} is ${img.status}, not active: it has no data to publish yet`);
    const body = (req.body as any)?.publish ?? req.body ?? {};
    if (typeof body.reference !== 'string' || !body.reference.trim()) throw new CloudletError('BadInput', 'publish.reference must be HOST[:PORT]/REPOSITORY:TAG');
    const ref = parseReference(body.reference);  // a bad reference is a 400 now, not a failed job
    if (ref.digest) throw new CloudletError('BadInput', 'publish.reference needs a tag, not a digest');
    const hasUser = typeof body.username === 'string' && body.username !== '';
    if (hasUser !== (typeof body.password === 'string' && body.password !== '')) throw new CloudletError('BadInput', 'publish.username and publish.password go together');
    // Kept in this closure only: never in the job record, its result or a log line.
    // Without a username: an admin's publish may use the daemon user's own Docker credentials
    // (undefined: looked up); a member's goes anonymous (null), never with the daemon's login.
    const credentials = hasUser ? new Credentials(body.username, body.password) : a.isAdmin ? undefined : null;
    const ca = typeof body.ca === 'string' && body.ca.trim() ? body.ca : readCaFile();
    const text = body.reference.trim().replace(/^oci:\/\//, '');
    // The wire profile by default: segments re-compressed for size, same overlay ID.
    const profile = parseProfile(body.profile ?? 'wire');
    const jobId = ctx.jobs.start('publish', a.projectId, img.id, async (job) => {
      const r = await publishOverlay(images.filePath(img.id), text, {
        credentials, ca, plainHttp: plainHttpSetting(), signal: job.signal, progress: (e) => job.progress(e), storeRoot: ctx.dataDir,
        profile, tmpDir: path.join(ctx.dataDir, 'tmp'),
      });
      images.update(img.id, { set: { cloudlet_published_ref: `oci://${r.reference}`, cloudlet_published_digest: `oci://${r.digestReference}` } });
      ctx.events.publish('images', { id: img.id, project_id: img.owner, change: 'published' });
      return { image_id: img.id, reference: `oci://${r.reference}`, digest_reference: `oci://${r.digestReference}`, manifest_digest: r.manifestDigest,
        overlay_id: r.overlayId, segments: r.segments, segment_bytes: r.segmentBytes, bytes_sent: r.bytesSent, retries: r.retries, seconds: r.seconds,
        profile: r.profile, recompressed: r.recompressed };
    });
    return reply.code(202).send({ job_id: jobId });
  });
}
