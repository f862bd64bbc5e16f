/**
 * The real CloudletSession: sandbox/client's CloudletClient, the only way extension/ reaches a
 * daemon. Maps OpenStack shapes to what the views need, and logs every call through the client's
 * hook (method, URL without query, status, time: never a token or a body).
 */
import * as fs from 'fs';
import { Readable } from 'stream';
import { CloudletClient, discoverAuthUrl, hostKey, type CallRecord, type Image, type Server } from '../sandbox/client';
import type { ApiCallRecord, ChangeEvent, CloudletSession, ConsoleStream, Credentials, ImageInfo, JobEnd, OverlayInfo, ServerInfo } from './api';
import type { CreateBaseRequest, ProgressEvent } from '../sandbox/client/types';
import { CloudletError } from '../sandbox/client';
import { devicesApi, type DevicesApi } from '../sandbox/client/devices';
import { startPublish, type PublishRequest } from '../sandbox/client/publish';
import { createSynthesisServer, registryAuthFor } from '../sandbox/registry/synthesisLogin';
import { compositionFromManifest } from './state/panels';
import { OVERLAY_TYPE } from './state/tree';

/** The daemon's developer service: serial console and builds from a workspace (sandbox/cloudlet/api/devsandbox.ts). */
export const SANDBOX_SERVICE = 'cloudlet-sandbox';

export function toServerInfo(s: Server): ServerInfo {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    imageId: typeof s.image === 'object' && s.image ? s.image.id : undefined,
    baseId: s['OS-EXT-CLOUDLET:base_id'] ?? undefined,
    overlayUrl: s.metadata?.overlay_url,
    ports: s['OS-EXT-CLOUDLET:ports'],
    jobId: s['OS-EXT-CLOUDLET:job_id'] ?? undefined,
    created: s.created ?? undefined,
  };
}

export function toImageInfo(i: Image): ImageInfo {
  return { id: i.id, name: i.name, status: i.status, size: i.size ?? undefined, cloudletType: i.cloudlet_type, baseId: i.base_sha256_uuid };
}

export function toOverlayInfo(i: Image, fileUrl: string): OverlayInfo {
  return {
    id: i.id,
    name: i.name,
    baseId: i.base_sha256_uuid ?? '',
    size: i.size ?? 0,
    url: fileUrl,
    createdAt: i.created_at,
    publishedRef: i.cloudlet_published_ref,
    publishedDigest: i.cloudlet_published_digest,
  };
}

class ClientSession implements CloudletSession {
  constructor(readonly endpoint: string, readonly c: CloudletClient) {}

  async handoffTarget(): Promise<{ url: string; token: string; fingerprint?: string }> {
    const url = this.c.endpoint('compute');
    return { url, token: this.c.token, fingerprint: this.c.trust?.pins?.[hostKey(url)] };
  }

  isAdmin(): boolean { return this.c.isAdmin; }
  createBase(req: CreateBaseRequest): Promise<{ jobId: string }> {
    if (!this.c.hasService(SANDBOX_SERVICE)) throw new CloudletError('BadInput', `${this.endpoint} cannot create base VMs (no ${SANDBOX_SERVICE} service in its catalog)`);
    return this.c.createBase(req);
  }
  regions(): string[] { const r = this.c.regions(); return r.length > 1 ? r : []; }
  inRegion(region: string): CloudletSession { return new ClientSession(this.endpoint, this.c.inRegion(region)); }
  computeEndpoint(): string { return this.c.endpoint('compute'); }
  /** The client itself, for sandbox/client helpers that take one (nearest cloudlet). */
  get client(): CloudletClient { return this.c; }

  async listImages(): Promise<ImageInfo[]> { return (await this.c.listImages()).map(toImageInfo); }
  async listServers(): Promise<ServerInfo[]> { return (await this.c.listServers()).map(toServerInfo); }
  async getServer(id: string): Promise<ServerInfo> { return toServerInfo(await this.c.getServer(id)); }

  async resumeBase(imageId: string, name: string): Promise<{ server: ServerInfo; jobId?: string }> {
    const r = await this.c.createServer({ name, imageRef: imageId });
    return { server: await this.getServer(r.id), jobId: r.jobId };
  }

  async synthesize(overlayUrl: string, name: string, registryLogin?: () => Promise<{ username: string; password: string } | undefined>): Promise<{ server: ServerInfo; jobId?: string }> {
    // oci://: the user's own registry login (secret storage, else docker login / cloudlet registry login),
    // only on a retry after the registry refused the anonymous pull, for this pull only.
    const r = await createSynthesisServer(this.c, { name, overlayUrl }, {
      login: async () => (await registryLogin?.()) ?? registryAuthFor(overlayUrl),
      warn: (m) => console.warn(`cloudlet: ${m}`),
    });
    return { server: await this.getServer(r.id), jobId: r.jobId };
  }

  async handoff(serverId: string, dest: { url: string; token: string; fingerprint?: string }, destName: string): Promise<{ jobId?: string }> {
    return this.c.handoff(serverId, { handoffUrl: dest.url, destToken: dest.token, destVmName: destName, destFingerprint: dest.fingerprint });
  }

  async createOverlay(serverId: string, name: string): Promise<{ jobId?: string; overlayId?: string }> {
    const r = await this.c.finishOverlay(serverId, name);
    return { jobId: r.jobId, overlayId: r.imageId };
  }

  pause(id: string) { return this.c.pauseServer(id); }
  unpause(id: string) { return this.c.unpauseServer(id); }
  stop(id: string) { return this.c.stopServer(id); }
  deleteServer(id: string) { return this.c.deleteServer(id); }
  deleteImage(id: string) { return this.c.deleteImage(id); }

  async importBase(file: string, name: string, signal?: AbortSignal, onProgress?: (e: ProgressEvent) => void): Promise<ImageInfo> {
    const size = fs.statSync(file).size;
    const img = await this.c.createImage({ name, cloudlet_type: 'cloudlet_base_disk', disk_format: 'raw', container_format: 'bare' });
    let done = 0;
    const src = fs.createReadStream(file);
    src.on('data', (b) => { done += b.length; onProgress?.({ phase: 'upload', done, total: size }); });
    signal?.addEventListener('abort', () => src.destroy(new CloudletError('Cancelled', 'cancelled')), { once: true });
    try {
      await this.c.uploadImageData(img.id, Readable.toWeb(src) as ReadableStream<Uint8Array>, size);
    } catch (e) {
      await this.c.deleteImage(img.id).catch(() => {});
      // The aborted upload fails as a connection error; the user pressed Cancel, so say that.
      if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      throw e;
    }
    return toImageInfo(await this.c.getImage(img.id));
  }

  async exportBase(imageId: string, file: string, signal?: AbortSignal, onProgress?: (e: ProgressEvent) => void): Promise<void> {
    const res = await this.c.downloadImageData(imageId, { signal });
    // A daemon keeps a base VM in its base store, not as image data: its image API answers 204.
    if (res.status === 204 || !res.body) {
      throw new CloudletError('NotFound', `${this.endpoint} serves no data for base image ${imageId} over its image API`,
        { hint: 'export a base where its files are: "Cloudlet: Export Base VM..." on the sandbox, or cloudlet base export on that host' });
    }
    const total = Number(res.headers.get('content-length') ?? 0) || undefined;
    const tmp = `${file}.part`;
    const out = fs.createWriteStream(tmp);
    let done = 0;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        done += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        onProgress?.({ phase: 'download', done, total });
      }
      await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      fs.renameSync(tmp, file);
    } catch (e) {
      out.destroy();
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  }

  private overlayFileUrl(id: string): string { return `${this.c.endpoint('image')}/v2/images/${id}/file`; }

  async listOverlays(): Promise<OverlayInfo[]> {
    const imgs = await this.c.listImages({ cloudlet_type: OVERLAY_TYPE });
    // Only complete overlays: an image still queued/saving (or killed by a cancelled build) is not listed.
    return imgs.filter((i) => i.status === 'active').map((i) => toOverlayInfo(i, this.overlayFileUrl(i.id)));
  }

  async getOverlay(id: string): Promise<OverlayInfo> {
    const img = await this.c.getImage(id);
    const info = toOverlayInfo(img, this.overlayFileUrl(id));
    if (img.status === 'active') {
      const m = await this.c.readOverlayManifest(id).catch(() => undefined);
      const c = m ? compositionFromManifest({ ...m.manifest, overlayId: m.overlayId, size: img.size }) : undefined;
      if (c && c.parts.length) info.composition = c;
    }
    return info;
  }

  /**
   * Copies an overlay image of this daemon to another one's Glance, streaming, so that cloudlet can
   * synthesize from its own image URL (a daemon sends its token only to itself). Returns the URL there.
   */
  async copyOverlayTo(id: string, dest: CloudletSession, onProgress?: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<string> {
    if (!(dest instanceof ClientSession)) throw new CloudletError('BadInput', 'cannot copy to that cloudlet');
    const img = await this.c.getImage(id);
    const created = await dest.c.createImage({ name: img.name, cloudlet_type: OVERLAY_TYPE, is_cloudlet: 'True', base_sha256_uuid: img.base_sha256_uuid ?? '',
      ...(img.overlay_id ? { overlay_id: String(img.overlay_id) } : {}) });
    try {
      const res = await this.c.downloadImageData(id, { signal });
      const total = Number(res.headers.get('content-length') ?? img.size ?? 0) || undefined;
      let done = 0;
      const counted = res.body!.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) { done += chunk.length; onProgress?.({ phase: 'upload', done, total }); ctl.enqueue(chunk); },
      }));
      await dest.c.uploadImageData(created.id, counted, total);
    } catch (e) {
      await dest.c.deleteImage(created.id).catch(() => {});
      throw e;
    }
    return `${dest.c.endpoint('image')}/v2/images/${created.id}/file`;
  }

  async watchJob(jobId: string, onProgress: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<JobEnd> {
    const end = await this.c.watchJob(jobId, onProgress, signal);
    const status = end.status === 'RUNNING' ? 'ERROR' : end.status;
    return { status, error: end.error, fault: end.fault, result: end.result };
  }

  cancelJob(jobId: string) { return this.c.cancelJob(jobId); }

  watchEvents(onEvent: (e: ChangeEvent) => void, onError: (e: unknown) => void): () => void {
    const abort = new AbortController();
    this.c.watchEvents((e) => onEvent({ topic: e.topic, data: e.data }), abort.signal).then(
      () => { if (!abort.signal.aborted) onError(new CloudletError('Unavailable', 'event stream closed')); },
      (e) => { if (!abort.signal.aborted) onError(e); },
    );
    return () => abort.abort();
  }

  async openConsole(serverId: string): Promise<ConsoleStream> {
    const abort = new AbortController();
    if (!this.c.hasService(SANDBOX_SERVICE)) throw new CloudletError('BadInput', `${this.endpoint} offers no serial console (no ${SANDBOX_SERVICE} service in its catalog)`);
    const path = `/servers/${encodeURIComponent(serverId)}/console`;
    const res = await this.c.request(SANDBOX_SERVICE, 'GET', path, { headers: { accept: 'application/octet-stream' }, signal: abort.signal });
    const dataFns: Array<(t: string) => void> = [];
    const closeFns: Array<(r?: string) => void> = [];
    let closed = false;
    const close = (reason?: string) => { if (closed) return; closed = true; abort.abort(); for (const f of closeFns) f(reason); };
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          const t = decoder.decode(chunk, { stream: true });
          if (t) for (const f of dataFns) f(t);
        }
        close('the VM console ended');
      } catch (e) {
        close(abort.signal.aborted ? undefined : (e as Error).message);
      }
    })();
    // Keystrokes are batched a little so a paste is one request, and sent in order.
    let pending = '';
    let sending: Promise<void> = Promise.resolve();
    const flush = () => {
      const data = pending;
      pending = '';
      if (!data) return;
      sending = sending.then(() => this.c.request(SANDBOX_SERVICE, 'POST', path, { headers: { 'content-type': 'application/octet-stream' }, body: data })
        .then((r) => r.arrayBuffer()).then(() => undefined, (e: unknown) => { for (const f of dataFns) f(`\r\n[input not delivered: ${(e as Error).message}]\r\n`); }));
    };
    return {
      write: (d) => { if (closed) return; const first = !pending; pending += d; if (first) setTimeout(flush, 15); },
      onData: (fn) => { dataFns.push(fn); },
      onClose: (fn) => { closeFns.push(fn); },
      close: () => close(),
    };
  }

  publishOverlay(imageId: string, req: PublishRequest): Promise<{ jobId: string }> { return startPublish(this.c, imageId, req); }

  private devicesClient: DevicesApi | undefined;
  devices(): DevicesApi | undefined {
    if (!this.c.hasService('reservation')) return undefined;
    return (this.devicesClient ??= devicesApi(this.c));
  }

  async buildFromWorkspace(folder: string, name: string): Promise<{ jobId: string }> {
    if (!this.c.hasService(SANDBOX_SERVICE)) throw new CloudletError('BadInput', `${this.endpoint} cannot build from a workspace (no ${SANDBOX_SERVICE} service in its catalog)`);
    const r = await this.c.call<{ job_id?: string; job?: { id: string } }>(SANDBOX_SERVICE, 'POST', '/builds', { build: { folder, name } });
    const jobId = r.job_id ?? r.job?.id;
    if (!jobId) throw new CloudletError('Internal', 'the daemon did not return a build job');
    return { jobId };
  }
}

/** The sandbox/client client behind a session (for helpers that take one: the nearest cloudlet). */
export function clientOf(s: CloudletSession): CloudletClient | undefined {
  return s instanceof ClientSession ? s.client : undefined;
}

export function toApiCall(c: CallRecord): ApiCallRecord {
  return { method: c.method, url: c.url, status: c.status === 0 ? 'error' : c.status, ms: c.ms, error: c.error };
}

/**
 * Connector over sandbox/client: password (or application credential) login against the Keystone behind `url` (the daemon's
 * own, or a fleet's: discoverAuthUrl), HTTPS checked against the system store and the cloudlet's
 * pinned certificates. A refused certificate throws the client's CertificateError (code Untrusted,
 * with the presented fingerprint), which Add Cloudlet turns into a trust-on-first-use question.
 */
export async function connect(url: string, creds: Credentials, onCall: (c: ApiCallRecord) => void, pins?: Record<string, string>): Promise<CloudletSession> {
  const base = url.replace(/\/+$/, '');
  const tls = pins && Object.keys(pins).length ? { pins } : undefined;
  const authUrl = /\/identity(\/v3)?$/.test(base) || /\/v3$/.test(base) ? base : await discoverAuthUrl(base, { tls });
  const common = { authUrl, tls, onCall: (c: CallRecord) => onCall(toApiCall(c)) };
  const app = creds.applicationCredential;
  const client = app
    ? await CloudletClient.loginWithApplicationCredential({ ...common, applicationCredentialId: app.id, applicationCredentialName: app.id ? undefined : app.name,
      username: app.id ? undefined : creds.username, secret: creds.password })
    : await CloudletClient.login({ ...common, username: creds.username, password: creds.password, project: creds.project });
  return new ClientSession(base, client);
}
