/**
 * POST /sandbox/v1/bases: `cloudlet base create` as a daemon job, for the editor's "Create Base
 * VM..." (issue 12.3): the test guest, a Debian suite built from Debian packages, or a disk image
 * file of the daemon's host. Admin only: it reads files of the host and runs a VM for minutes.
 *
 *   {base: {name, source: 'test-guest' | 'debian' | 'image',
 *           suite?, packages?: [..], disk_bytes?,                       (debian)
 *           image?: ABSOLUTE PATH, disk_bytes?, hostname?, user?, ssh_key?: 'ssh-ed25519 AAAA... c',  (image)
 *           ram_mib?, vcpus?, cpu_model?, ready_marker?, no_agent?, timeout_s?}}
 *   -> 202 {job_id}: progress events (phases guest, convert, boot, settle, save, digests), then
 *      DONE {base_id, name, image_id, ready_after_ms, origin} or ERROR with the fault (a guest that
 *      never got ready: its message ends with the last console lines). Cancelling the job
 *      (DELETE /cloudlet/v1/jobs/ID) ends the build or the boot; nothing is left in the base store.
 * The new base is advertised at once as a public base image (cloudlet_type cloudlet_base_disk).
 * Its VM counts against max_servers (servers/admission.ts) for the whole job: at the limit the
 * request is refused (403, code Forbidden, as Nova's quota) before a job starts.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { FastifyInstance } from 'fastify';
import type { DaemonContext, JobHandle } from '../context';
import type { ImageStore } from '../imageStore';
import { advertiseBase } from '../baseImages';
import { CloudletError } from '../../common/errors';
import { holdPlaceFor, startOrRelease, type Admission } from '../servers/admission';
import { checkBaseName, createBaseFrom, type BaseCommon, type BaseSource } from '../../base/sources';
import type { BaseStore } from '../../base/store';
import { normaliseDebianSpec } from '../../guest/debian';
import { validateNoCloud } from '../../guest/noCloud';
import { parseCpuModel } from '../../qemu/vmconfig';
import { devSandboxSchemas } from './schemas/devsandbox';

type Common = Omit<BaseCommon, 'onProgress' | 'signal' | 'guestCache'>;

const bad = (message: string, hint?: string) => new CloudletError('BadInput', message, hint ? { hint } : undefined);

function int(v: unknown, what: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`base.${what} must be a whole number from ${min} to ${max}`);
  return v;
}

function str(v: unknown, what: string, max = 256): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !v || v.length > max) throw bad(`base.${what} must be a non-empty string of at most ${max} characters`);
  return v;
}

const KEYS = new Set(['name', 'source', 'suite', 'packages', 'disk_bytes', 'image', 'hostname', 'user', 'ssh_key',
  'ram_mib', 'vcpus', 'cpu_model', 'ready_marker', 'no_agent', 'timeout_s']);

/** The request body as a base source and its common options; every field checked before a job starts. */
export function parseBaseCreate(body: unknown): { src: BaseSource; common: Common } {
  const b = (body as { base?: unknown } | null)?.base;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw bad('the body must be {"base": {"name": ..., "source": "test-guest" | "debian" | "image", ...}}');
  const o = b as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  if (unknown.length) throw bad(`unknown field${unknown.length > 1 ? 's' : ''} base.${unknown.join(', base.')}`);
  const name = str(o.name, 'name', 64);
  if (!name) throw bad('base.name is required');
  checkBaseName(name);
  const only = (fields: string[], source: string) => {
    for (const f of fields) if (o[f] !== undefined && o.source !== source) throw bad(`base.${f} goes with source "${source}"`);
  };
  only(['suite', 'packages'], 'debian');
  only(['image', 'hostname', 'user', 'ssh_key'], 'image');
  const diskBytes = int(o.disk_bytes, 'disk_bytes', 1024 ** 2, 2 * 1024 ** 4);
  let src: BaseSource;
  switch (o.source) {
    case 'test-guest':
      if (diskBytes !== undefined) throw bad('base.disk_bytes goes with source "debian" or "image"');
      src = { kind: 'test-guest' };
      break;
    case 'debian': {
      if (o.packages !== undefined && (!Array.isArray(o.packages) || o.packages.length > 100)) throw bad('base.packages must be a list of at most 100 Debian package names');
      const s = normaliseDebianSpec({ suite: str(o.suite, 'suite', 32) ?? 'bookworm', packages: o.packages as string[] | undefined, diskBytes });
      src = { kind: 'debian', suite: s.suite, packages: s.packages, diskBytes };
      break;
    }
    case 'image': {
      const file = str(o.image, 'image', 4096);
      if (!file || !path.isAbsolute(file)) throw bad('base.image must be the absolute path of a disk image file on the cloudlet\'s host');
      if (!fs.existsSync(file)) throw new CloudletError('NotFound', `no file ${file} on the cloudlet's host`);
      const hostname = str(o.hostname, 'hostname', 63);
      const user = str(o.user, 'user', 32);
      const sshKey = str(o.ssh_key, 'ssh_key', 17000);
      validateNoCloud({ hostname: hostname ?? 'cloudlet-guest', user, sshKey });
      src = { kind: 'image', file, diskBytes, hostname, user, sshKey };
      break;
    }
    default:
      throw bad(`base.source ${JSON.stringify(o.source)}: give "test-guest", "debian" or "image"`);
  }
  const cpuModel = str(o.cpu_model, 'cpu_model', 1024);
  if (cpuModel) parseCpuModel(cpuModel);
  if (o.no_agent !== undefined && typeof o.no_agent !== 'boolean') throw bad('base.no_agent must be true or false');
  const marker = str(o.ready_marker, 'ready_marker', 200);
  if (o.no_agent && !marker) throw bad('without the guest agent, say when the guest is ready', 'give base.ready_marker: a line its console prints when it is ready');
  const timeoutS = int(o.timeout_s, 'timeout_s', 10, 3 * 3600);
  const readiness = {
    ...(marker ? { consoleMarker: marker } : {}),
    ...(o.no_agent ? { agent: false } : {}),
    ...(timeoutS ? { timeoutMs: timeoutS * 1000 } : {}),
  };
  return {
    src,
    common: { name, ramMiB: int(o.ram_mib, 'ram_mib', 64, 256 * 1024), vcpus: int(o.vcpus, 'vcpus', 1, 64), cpuModel, readiness },
  };
}

export function baseCreateRoute(app: FastifyInstance, ctx: DaemonContext, o: { bases: BaseStore; images: ImageStore; admission: () => Admission }): void {
  /** The job: the base, then its public base image (baseImages.ts). */
  const create = async (job: JobHandle, src: BaseSource, common: Common) => {
    const b = await createBaseFrom(o.bases, src, { ...common, onProgress: (e) => job.progress(e), signal: job.signal });
    // The bases folder's watcher (baseImages.ts) may have advertised it already.
    let img = o.images.basesWithId(b.id)[0];
    if (!img) {
      img = advertiseBase(o.images, { baseId: b.id, name: b.name, ramBytes: b.manifest.vm.ramBytes });
      ctx.events.publish('images', { id: img.id, project_id: img.owner, visibility: 'public', change: 'active' });
    }
    return { base_id: b.id, name: b.name, image_id: img.id, ready_after_ms: b.manifest.readiness.readyAfterMs, origin: b.manifest.origin };
  };

  app.post('/bases', { schema: devSandboxSchemas.createBase }, async (req, reply) => {
    const a = ctx.requireAdmin(req);
    const { src, common } = parseBaseCreate(req.body);
    // The base's VM holds a place under max_servers from now until its job ends, however it ends.
    const slot = holdPlaceFor(o.admission(), `create base ${common.name}`);
    const jobId = startOrRelease(slot, () => ctx.jobs.start('base-create', a.projectId, undefined, async (job) => {
      try { return await create(job, src, common); } finally { slot.release(); }
    }));
    return reply.code(202).send({ job_id: jobId });
  });
}
