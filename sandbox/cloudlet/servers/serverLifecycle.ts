/**
 * The one owner of a server's state. Every status a server row takes is written here: created
 * (within the admission rule), built by its job (resume of a base, or synthesis of an overlay),
 * activated or failed, paused / unpaused / stopped, snapshotted to an overlay image, handed off,
 * deleted, and reconciled after a daemon restart (serverRecovery.ts). Routes parse and answer;
 * the handoff service and receiver call the methods below instead of writing rows themselves.
 *
 *   BUILD --job done--> ACTIVE <--pause/unpause--> PAUSED        any --delete--> DELETED
 *     \--job failed--> ERROR      ACTIVE|PAUSED --os-stop--> SHUTOFF
 */
import * as fs from 'fs';
import * as path from 'path';
import type { AuthContext, DaemonContext, JobHandle } from '../context';
import type { VmBackend, VmInfo } from '../vmBackend';
import { serverFault, type ServerRow, type ServerStatus, type ServerStore } from '../serverStore';
import type { ImageStore } from '../imageStore';
import { checkOverlayUrl, overlayUrlTrust, unreadable } from '../overlayFetch';
import { openHttpOverlay, openOciOverlay, openStoredOverlay, ownImageId, type OverlaySource } from '../overlaySource';
import type { AddressPolicy } from '../../common/addressPolicy';
import type { Credentials } from '../../registry/credentials';
import { parseReference } from '../../registry/reference';
import { CloudletError, describeError } from '../../common/errors';
import { storePaths } from '../../common/paths';
import type { HandoffService } from './serverHandoff';
import type { Admission, AdmissionSlot } from './admission';
import type { HandoffAction, ServerCreateRequest } from './serverRequest';
import { isDaemonKey, refuseDaemonKeys } from './serverRequest';
import { vmStateOf } from './serverView';
import { reconcileAfterRestart } from './serverRecovery';

export interface ServerLifecycleDeps {
  ctx: DaemonContext;
  backend: VmBackend;
  servers: ServerStore;
  images: ImageStore;
  admission: Admission;
  /** overlay_url limits: size cap, and where it may lead (default: public and loopback addresses). */
  overlay: { maxBytes: number; networks?: AddressPolicy; registryLogins?: Record<string, string[]>; registryLoginsByName?: boolean };
}

/**
 * Which login an oci:// pull of caller `a` uses: the one the request brought; else the daemon user's
 * own Docker login (undefined: looked up) for an admin or a project the operator granted that
 * registry in registry_logins; else none (null: anonymous). Never the daemon's login by default.
 * Entries are project IDs; names match too only when `byName` (the embedded identity, whose project
 * names are unique and set by the operator). Under Keystone a name is free text, unique only in its
 * domain: another domain's project could be named like a granted project or its ID.
 */
export function registryCredentialsFor(a: Pick<AuthContext, 'isAdmin' | 'projectId' | 'projectName'>, registry: string, given: Credentials | undefined,
  logins: Record<string, string[]> = {}, byName = false): Credentials | null | undefined {
  if (given) return given;
  const granted = logins[registry.toLowerCase()] ?? [];
  return a.isAdmin || granted.includes(a.projectId) || (byName && granted.includes(a.projectName)) ? undefined : null;
}

/** The power actions: from which statuses, to which, and what the VM layer does. */
const POWER_ACTIONS = {
  pause: { from: ['ACTIVE'], to: 'PAUSED', change: 'paused', task: 'pausing', run: (b: VmBackend, vm: string) => b.pause(vm) },
  unpause: { from: ['PAUSED'], to: 'ACTIVE', change: 'active', task: 'unpausing', run: (b: VmBackend, vm: string) => b.unpause(vm) },
  'os-stop': { from: ['ACTIVE', 'PAUSED'], to: 'SHUTOFF', change: 'stopped', task: 'powering-off', run: (b: VmBackend, vm: string) => b.stop(vm) },
  // Nova allows a hard reboot from more states than a soft one; both reset the VM here.
  'reboot-soft': { from: ['ACTIVE'], to: 'ACTIVE', change: 'rebooted', task: 'reboot_started', run: (b: VmBackend, vm: string) => b.reboot(vm) },
  'reboot-hard': { from: ['ACTIVE', 'PAUSED'], to: 'ACTIVE', change: 'rebooted', task: 'reboot_started_hard', run: (b: VmBackend, vm: string) => b.reboot(vm) },
} as const satisfies Record<string, { from: readonly ServerStatus[]; to: ServerStatus; change: string; task: string; run: (b: VmBackend, vm: string) => Promise<void> }>;

export type PowerAction = keyof typeof POWER_ACTIONS;

/** What a handoff destination records once the VM runs here. */
export interface HandoffArrival {
  name: string; projectId: string; userId: string; flavorId: string; baseId: string;
  metadata: Record<string, string>; vmId: string; ports: Record<string, string>;
}

export class ServerLifecycle {
  /** The handoff service, when this cloudlet can hand VMs off (set by the compute module). */
  handoff?: HandoffService;

  constructor(private readonly d: ServerLifecycleDeps) {}

  get servers(): ServerStore { return this.d.servers; }
  get admission(): Admission { return this.d.admission; }

  /** A server of the caller's project (admins: any), else 404. */
  get(a: AuthContext, id: string): ServerRow { return this.d.servers.get(a, id); }

  publish(r: Pick<ServerRow, 'id' | 'project_id' | 'status'>, change: string): void {
    this.d.ctx.events.publish('servers', { id: r.id, project_id: r.project_id, status: r.status, change });
  }

  /** Creates a server (BUILD) and starts the job that builds its VM; the row is returned with its job id. */
  async create(a: AuthContext, req: ServerCreateRequest): Promise<ServerRow> {
    return req.overlayUrl !== undefined ? this.createBySynthesis(a, req, req.overlayUrl) : this.createFromBase(a, req);
  }

  private createFromBase(a: AuthContext, req: ServerCreateRequest): ServerRow {
    const { backend, images, servers, admission } = this.d;
    if (!req.imageId) throw new CloudletError('BadInput', 'imageRef is required (a base image) unless metadata.overlay_url is given');
    const img = images.get(a, req.imageId);
    const baseId = img.properties.base_sha256_uuid;
    if (img.properties.cloudlet_type !== 'cloudlet_base_disk' || !baseId) {
      throw new CloudletError('BadInput', `image ${req.imageId} is not a cloudlet base VM (cloudlet_type cloudlet_base_disk); to run an overlay pass metadata.overlay_url`);
    }
    if (!backend.hasBase(baseId)) throw new CloudletError('MissingBase', `base ${baseId} of image ${req.imageId} is not on this cloudlet`);
    const row = admission.admit(() => servers.insert({ name: req.name, project_id: a.projectId, user_id: a.userId, status: 'BUILD', task_state: 'spawning',
      image_id: req.imageId, flavor_id: req.flavorId, base_id: baseId, metadata: req.metadata, ports: {} }));
    return this.build(a, row, 'resume', (job) => backend.resume(baseId, { name: `srv-${row.id}`, ports: req.ports }, (e) => job.progress(e), job.signal));
  }

  private async createBySynthesis(a: AuthContext, req: ServerCreateRequest, overlayUrl: string): Promise<ServerRow> {
    const { ctx, backend, servers, admission } = this.d;
    admission.check(); // before the overlay is opened: a full cloudlet fetches nothing (checked again with the insert)
    const source = await this.openOverlay(a, overlayUrl, req.metadata, req.registryAuth);
    let row: ServerRow;
    try {
      if (!backend.hasBase(source.baseId)) {
        throw new CloudletError('MissingBase', `overlay ${source.overlayId.slice(0, 12)} needs base ${source.baseId}, which this cloudlet does not hold; import that base first`);
      }
      row = admission.admit(() => servers.insert({ name: req.name, project_id: a.projectId, user_id: a.userId, status: 'BUILD', task_state: 'scheduling',
        image_id: req.imageRef, flavor_id: req.flavorId, base_id: source.baseId, metadata: req.metadata, ports: {} }));
    } catch (e) { await source.close(); throw e; }
    const id = row.id;
    return this.build(a, row, 'synthesis', async (job) => {
      const tmp = path.join(storePaths(ctx.dataDir).tmp, `overlay-${id}`);
      try {
        servers.update(id, { task_state: 'downloading' });
        job.progress({ phase: 'download', done: 0 });
        const overlay = await source.prepare(tmp, (done, total) => job.progress({ phase: 'download', done, total }), job.signal);
        servers.update(id, { task_state: 'spawning', progress: 50 });
        return await backend.synthesize(overlay, { name: `srv-${id}`, ports: req.ports }, (e) => job.progress(e), job.signal);
      } finally {
        fs.rmSync(tmp, { force: true });
        await source.close();
      }
    });
  }

  private async openOverlay(a: AuthContext, overlayUrl: string, metadata: Record<string, string>, registryAuth?: Credentials): Promise<OverlaySource> {
    const { ctx, overlay } = this.d;
    const url = checkOverlayUrl(overlayUrl);
    const o = { trust: overlayUrlTrust(url.href, metadata, ctx.peerTrust), policy: overlay.networks, log: ctx.log };
    if (url.protocol === 'oci:') {
      const registry = parseReference(overlayUrl).registry;
      return openOciOverlay(overlayUrl, ctx.dataDir, overlay.maxBytes, o, {
        credentials: registryCredentialsFor(a, registry, registryAuth, overlay.registryLogins, overlay.registryLoginsByName), project: a.projectId,
      });
    }
    // An image of our own image service: read where it is stored, if the caller may read it (else the
    // same refusal as a download answered 404 or 204 would give).
    const own = ownImageId(url, ctx.serviceUrl('image'));
    if (own) {
      let status: string;
      try { status = this.d.images.get(a, own).status; } catch { throw unreadable(url.href, `no image ${own} the caller may read`, o); }
      if (status !== 'active') throw unreadable(url.href, `image ${own} is ${status}, it has no data`, o);
      return openStoredOverlay(this.d.images.filePath(own), url.href, overlay.maxBytes, o);
    }
    // Our own Glance URLs need the caller's token; other URLs get no credentials.
    const headers: Record<string, string> = url.href.startsWith(ctx.publicUrl + '/') ? { 'x-auth-token': a.token } : {};
    return openHttpOverlay(url.href, headers, overlay.maxBytes, o);
  }

  /** Runs the job that makes a BUILD server's VM; the server ends ACTIVE or ERROR with it. */
  private build(a: AuthContext, row: ServerRow, kind: string, makeVm: (job: JobHandle) => Promise<VmInfo>): ServerRow {
    const jobId = this.d.ctx.jobs.start(kind, a.projectId, row.id, async (job) => {
      try {
        return this.activate(row.id, await makeVm(job));
      } catch (e) {
        this.fail(row.id, e);
        throw e;
      }
    });
    const r = this.d.servers.update(row.id, { job_id: jobId });
    this.publish(r, 'created');
    return r;
  }

  /** The VM of a BUILD server runs: ACTIVE. A server deleted while building: its new VM goes too. */
  activate(id: string, vm: Pick<VmInfo, 'id' | 'ports'>): { server_id: string; vm_id: string; ports: Record<string, string> } {
    if (!this.d.servers.getRow(id)) {
      void this.d.backend.delete(vm.id).catch(() => {});
      throw new CloudletError('Cancelled', 'server was deleted while it was being built');
    }
    const r = this.d.servers.update(id, { status: 'ACTIVE', task_state: null, vm_id: vm.id, ports: vm.ports, progress: 100, launched_at: new Date().toISOString() });
    this.publish(r, 'active');
    return { server_id: id, vm_id: vm.id, ports: vm.ports };
  }

  /** ERROR with the fault of `e` (an error or a sentence); nothing for a server already deleted. */
  fail(id: string, e: unknown, change = 'error'): void {
    if (!this.d.servers.getRow(id)) return;
    this.publish(this.d.servers.fail(id, e), change);
  }

  async delete(r: ServerRow): Promise<void> {
    if (r.task_state === 'migrating') throw new CloudletError('Conflict', `Cannot 'delete' instance ${r.id} while it is in task_state migrating`);
    if (r.job_id) this.d.ctx.jobs.cancel(r.job_id);
    this.d.servers.update(r.id, { status: 'DELETED', task_state: 'deleting' });
    if (r.vm_id) await this.d.backend.delete(r.vm_id).catch((e) => this.d.ctx.log.warn(`server ${r.id}: deleting its VM: ${describeError(e)}`));
    this.publish({ ...r, status: 'DELETED' }, 'deleted');
  }

  /** The server's VM, if the server is in one of `states` with no operation running; else Nova's 409. */
  private vmFor(r: ServerRow, action: string, states: readonly ServerStatus[]): string {
    if (!states.includes(r.status) || !r.vm_id || r.task_state) {
      throw new CloudletError('Conflict', `Cannot '${action}' instance ${r.id} while it is in vm_state ${vmStateOf(r.status)}${r.task_state ? ` (task_state ${r.task_state})` : ''}`);
    }
    return r.vm_id;
  }

  /**
   * os-start: a stopped server's VM continues from the state its stop saved. A stopped server holds
   * no place under max_servers, so starting it passes the admission rule like any other VM start.
   */
  async start(r: ServerRow): Promise<void> {
    const vmId = this.vmFor(r, 'os-start', ['SHUTOFF']);
    const slot = this.d.admission.reserve();
    this.d.servers.update(r.id, { task_state: 'powering-on' });
    let vm;
    try { vm = await this.d.backend.start(vmId); } catch (e) { slot.release(); this.endTask(r.id); throw e; }
    const ports = vm.ports;
    this.d.admission.convert(slot, () => this.settle(r.id, { status: 'ACTIVE', ports }, 'active'));
  }

  /** After an action's wait: its outcome, unless the server was deleted meanwhile (a delete wins). */
  private settle(id: string, fields: Partial<ServerRow>, change: string): void {
    const now = this.d.servers.getRow(id);
    if (!now || now.status === 'DELETED') return;
    this.publish(this.d.servers.update(id, { ...fields, task_state: null }), change);
  }

  private endTask(id: string): void {
    const now = this.d.servers.getRow(id);
    if (now && now.status !== 'DELETED') this.d.servers.update(id, { task_state: null });
  }

  /**
   * Server metadata writes (Nova's /servers/{id}/metadata): merged into what is there, or replacing
   * it (`replace`), or one key removed. At most `max` items; the server's own keys (overlay_url,
   * ports, handoff_*) are ordinary items, as in Nova, and changing them changes nothing of the VM.
   */
  setMetadata(r: ServerRow, items: Record<string, string>, o: { replace: boolean; max: number }): Record<string, string> {
    refuseDaemonKeys(Object.keys(items));
    // handoff_* keys are the daemon's record of where the VM came from: a replace keeps them.
    const kept = Object.fromEntries(Object.entries(r.metadata).filter(([k]) => isDaemonKey(k)));
    const metadata = o.replace ? { ...items, ...kept } : { ...r.metadata, ...items };
    if (Object.keys(metadata).length > o.max) throw new CloudletError('Forbidden', `Quota exceeded for metadata_items: at most ${o.max} metadata items per server`);
    this.publish(this.d.servers.update(r.id, { metadata }), 'updated');
    return metadata;
  }

  deleteMetadata(r: ServerRow, key: string): void {
    refuseDaemonKeys([key]);
    if (!Object.hasOwn(r.metadata, key)) throw new CloudletError('NotFound', `Metadata item was not found: ${key}`);
    const { [key]: _gone, ...metadata } = r.metadata;
    this.publish(this.d.servers.update(r.id, { metadata }), 'updated');
  }

  /** os-getConsoleOutput: the last `lines` lines (all when undefined) of the VM's serial console. */
  consoleOutput(r: ServerRow, lines: number | undefined): string {
    if (!r.vm_id || !['ACTIVE', 'PAUSED', 'SHUTOFF'].includes(r.status)) {
      throw new CloudletError('Conflict', `Cannot 'os-getConsoleOutput' instance ${r.id} while it is in vm_state ${vmStateOf(r.status)}`);
    }
    const text = this.d.backend.consoleLog(r.vm_id, 1 << 20);
    if (lines === undefined) return text;
    const all = text.split('\n');
    return lines === 0 ? '' : all.slice(-lines - (all[all.length - 1] === '' ? 1 : 0)).join('\n');
  }

  /** Pause, unpause, stop, reboot: the server is busy (task_state) while its VM acts, so no other action or a handoff runs meanwhile. */
  async power(r: ServerRow, action: PowerAction): Promise<void> {
    const p = POWER_ACTIONS[action];
    const vmId = this.vmFor(r, action, p.from);
    this.d.servers.update(r.id, { task_state: p.task });
    try { await p.run(this.d.backend, vmId); } catch (e) { this.endTask(r.id); throw e; }
    this.settle(r.id, { status: p.to }, p.change);
  }

  /** cloudlet-overlay-finish: an overlay image of the server's VM, made by a job; the server keeps running. */
  finishOverlay(a: AuthContext, r: ServerRow, overlayName: string | undefined): { imageId: string; jobId: string } {
    const { ctx, backend, images, servers } = this.d;
    const vmId = this.vmFor(r, 'cloudlet-overlay-finish', ['ACTIVE', 'PAUSED']);
    const img = images.create(a.projectId, { name: overlayName ?? `${r.name}-overlay`, disk_format: 'raw', container_format: 'bare', is_cloudlet: 'True',
      cloudlet_type: 'cloudlet_overlay', base_sha256_uuid: r.base_id ?? '' });
    images.setStatus(img.id, 'saving');
    servers.update(r.id, { task_state: 'image_snapshot' });
    const jobId = ctx.jobs.start('overlay', a.projectId, r.id, async (job) => {
      const out = path.join(storePaths(ctx.dataDir).tmp, `image-${img.id}-overlay`);
      try {
        const info = await backend.makeOverlay(vmId, out, (e) => job.progress(e), job.signal);
        images.adoptFile(img.id, out);
        images.update(img.id, { set: { base_sha256_uuid: info.baseId, overlay_id: info.overlayId } });
        ctx.events.publish('images', { id: img.id, project_id: a.projectId, change: 'active' });
        return { image_id: img.id, overlay_id: info.overlayId, bytes: info.bytes };
      } catch (e) {
        fs.rmSync(out, { force: true });
        images.setStatus(img.id, 'killed');
        throw e;
      } finally {
        if (servers.getRow(r.id)) servers.update(r.id, { task_state: null });
      }
    });
    return { imageId: img.id, jobId };
  }

  /** cloudlet-handoff: moves an ACTIVE server's VM to another cloudlet (a job of the handoff service). */
  startHandoff(a: AuthContext, r: ServerRow, h: HandoffAction): string {
    if (!this.handoff) throw new CloudletError('BadInput', 'handoff is not available on this cloudlet', { status: 501 });
    this.vmFor(r, 'cloudlet-handoff', ['ACTIVE']);
    return this.handoff.start(a, r, { handoffUrl: h.handoffUrl, destToken: h.destToken, destVmName: h.destVmName ?? r.name, destFingerprint: h.destFingerprint });
  }

  // ---- handoff, source side

  /** A handoff of `r` begins (or, after a restart, is being settled with its VM paused). */
  migrating(r: ServerRow, status: ServerStatus = r.status): void {
    this.d.servers.update(r.id, { status, task_state: 'migrating' });
    this.publish({ ...r, status }, 'migrating');
  }

  attachJob(id: string, jobId: string): void { this.d.servers.update(id, { job_id: jobId }); }

  /** The destination runs the VM: the copy here goes, the server is DELETED with where it went in its metadata. */
  async handedOff(r: ServerRow, vmId: string, extra: Record<string, string>): Promise<void> {
    await this.d.backend.delete(vmId).catch((e) => this.d.ctx.log.warn(`handoff of server ${r.id}: removing the source VM: ${describeError(e)}`));
    this.d.servers.update(r.id, { status: 'DELETED', task_state: null, vm_id: null, metadata: { ...r.metadata, ...extra } });
    this.publish({ ...r, status: 'DELETED' }, 'handed-off');
  }

  /**
   * The handoff ended without moving the VM: the server keeps the VM here in the state the VM is
   * in (`status`), with `handoff_error` in its metadata and, when given, a fault.
   */
  handoffEnded(r: ServerRow, status: ServerStatus, handoffError: string, o: { change?: string; fault?: unknown } = {}): void {
    if (!this.d.servers.getRow(r.id)) return;
    const row = this.d.servers.update(r.id, { status, task_state: null, metadata: { ...r.metadata, handoff_error: handoffError.slice(0, 255) },
      ...(o.fault === undefined ? {} : { fault: serverFault(o.fault) }) });
    this.publish(row, o.change ?? 'handoff-failed');
  }

  // ---- handoff, destination side

  /** The handed-off VM runs here: its server row is written (ACTIVE) and takes over the session's admission slot. */
  arrivedByHandoff(slot: AdmissionSlot, h: HandoffArrival): ServerRow {
    const row = this.d.admission.convert(slot, () => {
      const r = this.d.servers.insert({ name: h.name, project_id: h.projectId, user_id: h.userId, status: 'ACTIVE', image_id: '',
        flavor_id: h.flavorId, base_id: h.baseId, metadata: h.metadata, ports: h.ports });
      return this.d.servers.update(r.id, { vm_id: h.vmId, progress: 100, launched_at: new Date().toISOString() });
    });
    this.publish(row, 'active');
    return row;
  }

  /** Merges `extra` into a server's metadata (handoff reports). */
  annotate(id: string, extra: Record<string, string>): void {
    const row = this.d.servers.getRow(id);
    if (row) this.d.servers.update(id, { metadata: { ...row.metadata, ...extra } });
  }

  // ---- restart

  /** After a daemon restart: adopt running VMs and make every server's row say what is true. */
  reconcile(): Promise<void> { return reconcileAfterRestart(this.d, this.handoff); }
}
