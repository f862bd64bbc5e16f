/**
 * The typed client of a cloudlet (or of a real OpenStack cloud): what the CLI and the VS Code
 * extension use. Pure JS over undici (transport.ts: TLS trust); no native modules, bundleable for the extension host.
 *
 * Every service URL comes from the Keystone catalog returned at login: services may live on
 * different hosts, so nothing here derives one service's address from another's.
 */
import { CloudletError, codeForStatus, isCloudletError, isErrorCode, type ErrorCode } from '../common/errors';
import { readSse } from './sse';
import { HEAD_READ_BYTES, manifestFromHead } from '../overlay/manifestHead';
import { LIMITS, type OverlayManifest } from '../overlay/format';
import type { CatalogEntry, ChangeEvent, CreateBaseRequest, Flavor, Image, ImagePage, Job, JobEnd, ProgressEvent, Server, ServerCreated } from './types';
import { CertificateError, fetchFailure, transportFetch, type TlsTrust } from './transport';
import { readAtMost } from '../common/readAtMost';

/** One API call, for the extension's output channel. Never holds tokens, passwords or bodies. */
export interface CallRecord { method: string; service: string; url: string; status: number; ms: number; error?: string }

export interface ClientOptions {
  /** Called after every HTTP call (also failed ones, with status 0 when there was no answer). */
  onCall?: (c: CallRecord) => void;
  /** Per-request timeout for ordinary calls (streams and transfers have none). Default 60 s. */
  timeoutMs?: number;
  /** Interface to pick in the catalog. Default 'public'. */
  interface?: string;
  /**
   * Region to pick in the catalog (a fleet: one Keystone, each cloudlet a region). Default: the
   * first endpoint of the interface, whatever its region.
   */
  region?: string;
  /** How to trust HTTPS servers: the system store (default), a CA, or a pinned certificate fingerprint. */
  tls?: TlsTrust;
}

export interface LoginOptions extends ClientOptions {
  /** Keystone URL, e.g. http://127.0.0.2:8774/identity/v3 (a URL without /v3 gets it added). */
  authUrl: string;
  username: string;
  password: string;
  project: string;
  userDomain?: string;
  projectDomain?: string;
}

/**
 * Login with a Keystone application credential instead of a password: its id, or its name with
 * the owning user's name. The token is scoped to the credential's project, with its roles.
 */
export interface ApplicationCredentialLoginOptions extends ClientOptions {
  authUrl: string;
  applicationCredentialId?: string;
  applicationCredentialName?: string;
  /** The credential's user, when it is named by `applicationCredentialName`. */
  username?: string;
  userDomain?: string;
  secret: string;
}

export interface Session {
  authUrl: string;
  token: string;
  expiresAt: string;
  userId: string;
  userName: string;
  projectId: string;
  projectName: string;
  roles: string[];
  catalog: CatalogEntry[];
  /** The application credential the token was made from (such a login renews with it, not a password). */
  applicationCredential?: { id: string; name: string };
}

/**
 * An HTTP error from a cloudlet/OpenStack service: the CloudletError the daemon threw, rebuilt from
 * the error body's `cloudlet_error` (code, hint); from the status alone when a service sends none.
 */
export class ApiError extends CloudletError {
  constructor(readonly httpStatus: number, message: string, readonly method: string, readonly url: string, readonly body: unknown) {
    const sent = cloudletFault(body);
    super(sent?.code ?? codeForStatus(httpStatus), message, { status: httpStatus, hint: sent?.hint });
    this.name = 'ApiError';
  }
}

/** The `cloudlet_error` part of a daemon's error body, if the body has a valid one. */
function cloudletFault(body: unknown): { code: ErrorCode; hint?: string } | undefined {
  const f = body && typeof body === 'object' ? (body as { cloudlet_error?: unknown }).cloudlet_error : undefined;
  if (!f || typeof f !== 'object') return undefined;
  const { code, hint } = f as { code?: unknown; hint?: unknown };
  return isErrorCode(code) ? { code, hint: typeof hint === 'string' && hint ? hint : undefined } : undefined;
}

/** The error a job that did not end DONE stands for, with the code it failed with (the daemon's fault). */
export function jobEndError(end: JobEnd, what: string): CloudletError {
  if (end.status === 'CANCELLED') return new CloudletError('Cancelled', `${what}: cancelled`);
  const f = end.fault;
  return new CloudletError(f?.code ?? 'Internal', `${what} failed: ${f?.message ?? end.error ?? 'no detail'}`, { hint: f?.hint });
}

/** The message inside any OpenStack error body (Nova, Keystone, Glance, Blazar, Zun, Ironic). */
export function openstackErrorMessage(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return typeof body === 'string' && body ? body.slice(0, 500) : undefined;
  const b = body as Record<string, any>;
  if (typeof b.error_message === 'string') {
    try { return JSON.parse(b.error_message).faultstring ?? b.error_message; } catch { return b.error_message; }
  }
  if (Array.isArray(b.errors) && b.errors[0]) return b.errors[0].detail ?? b.errors[0].title;
  if (typeof b.message === 'string') return b.message;
  const first = b[Object.keys(b)[0]];
  if (first && typeof first === 'object' && typeof first.message === 'string') return first.message;
  return undefined;
}

/** A stream the daemon ended because the token it was opened with expired or was revoked. */
function tokenEnded(d: { reason?: unknown }, doing: string): CloudletError {
  return new CloudletError('Unauthorized', `the token ${d.reason === 'revoked' ? 'was revoked' : 'expired'} while ${doing}`, { hint: 'log in again' });
}

type FetchBody = NonNullable<RequestInit['body']>;
export type Body = Record<string, unknown> | unknown[] | undefined;
type Service = 'identity' | 'compute' | 'image' | 'reservation' | 'container' | 'inventory' | 'cloudlet' | string;

export class CloudletClient {
  private constructor(public session: Session, private opts: ClientOptions) {}

  /** Password login scoped to a project: token + catalog. */
  static async login(o: LoginOptions): Promise<CloudletClient> {
    return CloudletClient.issue(o, {
      identity: { methods: ['password'], password: { user: { name: o.username, domain: { name: o.userDomain ?? 'Default' }, password: o.password } } },
      scope: { project: { name: o.project, domain: { name: o.projectDomain ?? 'Default' } } },
    });
  }

  /** Application credential login: token + catalog, on the credential's project (no scope is sent). */
  static async loginWithApplicationCredential(o: ApplicationCredentialLoginOptions): Promise<CloudletClient> {
    if (!o.secret || !(o.applicationCredentialId || (o.applicationCredentialName && o.username))) {
      throw new CloudletError('BadInput', 'an application credential login needs its secret and its id, or its name and its user');
    }
    const credential = o.applicationCredentialId
      ? { id: o.applicationCredentialId, secret: o.secret }
      : { name: o.applicationCredentialName, user: { name: o.username, domain: { name: o.userDomain ?? 'Default' } }, secret: o.secret };
    return CloudletClient.issue(o, { identity: { methods: ['application_credential'], application_credential: credential } });
  }

  private static async issue(o: ClientOptions & { authUrl: string }, auth: Record<string, unknown>): Promise<CloudletClient> {
    const authUrl = normalizeAuthUrl(o.authUrl);
    const tmp = new CloudletClient({ authUrl, token: '', expiresAt: '', userId: '', userName: '', projectId: '', projectName: '', roles: [], catalog: [] }, o);
    const res = await tmp.fetchRaw('identity', 'POST', `${authUrl}/auth/tokens`, { json: { auth }, anonymous: true });
    const token = res.headers.get('x-subject-token');
    const j = (await res.json()) as { token: any };
    if (!token) throw new CloudletError('Internal', `${authUrl}: no X-Subject-Token in the answer to a login`);
    return new CloudletClient(sessionFrom(authUrl, token, j.token), o);
  }

  /** Resume a session from a stored token (validates it, refreshes the catalog). */
  static async fromToken(authUrl: string, token: string, o: ClientOptions = {}): Promise<CloudletClient> {
    const url = normalizeAuthUrl(authUrl);
    const c = new CloudletClient({ authUrl: url, token, expiresAt: '', userId: '', userName: '', projectId: '', projectName: '', roles: [], catalog: [] }, o);
    const res = await c.fetchRaw('identity', 'GET', `${url}/auth/tokens`, { headers: { 'x-subject-token': token } });
    c.session = sessionFrom(url, token, ((await res.json()) as { token: any }).token);
    return c;
  }

  get token(): string { return this.session.token; }
  /** How this client verifies certificates (to pass a pinned peer on, e.g. a handoff destination's). */
  get trust(): TlsTrust | undefined { return this.opts.tls; }
  get isAdmin(): boolean { return this.session.roles.includes('admin'); }
  /** True when the token has less than `marginMs` left. */
  expiresSoon(marginMs = 60_000): boolean { return Date.parse(this.session.expiresAt) - Date.now() < marginMs; }

  /** The region this client's calls go to, when one was chosen. */
  get region(): string | undefined { return this.opts.region; }

  hasService(type: Service): boolean { return this.endpoints(type).length > 0; }

  /** The catalog URL of a service type (no trailing slash). */
  endpoint(type: Service): string {
    if (type === 'identity' && !this.session.catalog.some((c) => c.type === 'identity')) return this.session.authUrl.replace(/\/v3$/, '');
    const eps = type === 'identity' ? this.endpoints(type, true) : this.endpoints(type);
    const want = this.opts.interface ?? 'public';
    const ep = eps.find((e) => e.interface === want) ?? eps[0];
    if (!ep) {
      throw new CloudletError('NotFound', `the catalog of ${this.session.authUrl} has no ${type} service${this.opts.region ? ` in region ${this.opts.region}` : ''}`);
    }
    return ep.url.replace(/\/$/, '');
  }

  /**
   * The regions of the catalog that offer `type` (default compute), sorted: in a fleet, one per
   * cloudlet. A daemon that is its own Keystone has one.
   */
  regions(type: Service = 'compute'): string[] {
    const out = new Set<string>();
    for (const e of this.session.catalog.filter((c) => c.type === type).flatMap((c) => c.endpoints)) {
      const r = e.region_id ?? e.region;
      if (r) out.add(r);
    }
    return [...out].sort();
  }

  /** A client on the same login (same token, no new login) whose calls go to `region`. */
  inRegion(region: string): CloudletClient {
    if (!this.regions().includes(region)) {
      throw new CloudletError('NotFound', `region ${region} is not in the catalog of ${this.session.authUrl}`, { hint: `regions there: ${this.regions().join(', ') || 'none'}` });
    }
    return new CloudletClient(this.session, { ...this.opts, region });
  }

  /** The endpoints of a service type in this client's region (any region when none was chosen, or `anyRegion`). */
  private endpoints(type: Service, anyRegion = false) {
    const all = this.session.catalog.filter((c) => c.type === type).flatMap((c) => c.endpoints);
    const r = this.opts.region;
    return r && !anyRegion ? all.filter((e) => (e.region_id ?? e.region) === r) : all;
  }

  // ---- generic calls ------------------------------------------------------------------------

  /** JSON call to `path` of a service (path begins with /). Returns the parsed body (undefined on 204). */
  async call<T = any>(service: Service, method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<T> {
    const res = await this.fetchRaw(service, method, this.serviceUrl(service, path), { json: body, headers });
    if (res.status === 204 || method === 'HEAD') return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Raw fetch to a service path, with auth and error mapping; for streams and binary transfers. */
  async request(service: Service, method: string, path: string, init: { headers?: Record<string, string>; body?: FetchBody | null; signal?: AbortSignal; duplex?: 'half' } = {}): Promise<Response> {
    return this.fetchRaw(service, method, this.serviceUrl(service, path), { ...init, noTimeout: true });
  }

  // ---- compute (Nova v2.1) ------------------------------------------------------------------

  async listServers(): Promise<Server[]> { return (await this.call<{ servers: Server[] }>('compute', 'GET', '/servers/detail')).servers; }
  async getServer(id: string): Promise<Server> { return (await this.call<{ server: Server }>('compute', 'GET', `/servers/${enc(id)}`)).server; }

  /**
   * Create a server. From a base image (imageRef) it resumes the base VM; with overlayUrl it runs
   * VM synthesis. Returns the server as created (status BUILD) and the job id to watch.
   */
  async createServer(o: { name: string; imageRef?: string; flavorRef?: string; overlayUrl?: string; metadata?: Record<string, string>;
    /** The caller's login to an oci:// overlayUrl's registry, for that pull only (see registryAuthFor in sandbox/registry). */
    registryAuth?: { username: string; password: string } }): Promise<{ id: string; jobId?: string }> {
    const metadata = { ...(o.metadata ?? {}), ...(o.overlayUrl ? { overlay_url: o.overlayUrl } : {}) };
    const r = await this.call<{ server: ServerCreated }>('compute', 'POST', '/servers', {
      server: { name: o.name, imageRef: o.imageRef ?? '', flavorRef: o.flavorRef ?? '1', metadata },
      ...(o.registryAuth ? { 'cloudlet:registry_auth': { username: o.registryAuth.username, password: o.registryAuth.password } } : {}),
    });
    return { id: r.server.id, jobId: r.server['OS-EXT-CLOUDLET:job_id'] ?? undefined };
  }

  async deleteServer(id: string): Promise<void> { await this.call('compute', 'DELETE', `/servers/${enc(id)}`); }
  async serverAction<T = any>(id: string, action: Record<string, unknown>): Promise<T> {
    return this.call<T>('compute', 'POST', `/servers/${enc(id)}/action`, action);
  }
  async pauseServer(id: string): Promise<void> { await this.serverAction(id, { pause: null }); }
  async unpauseServer(id: string): Promise<void> { await this.serverAction(id, { unpause: null }); }
  async stopServer(id: string): Promise<void> { await this.serverAction(id, { 'os-stop': null }); }

  /** Make an overlay image of this server's VM (cloudlet-overlay-finish). */
  async finishOverlay(id: string, overlayName: string): Promise<{ imageId: string; jobId: string }> {
    const r = await this.serverAction<{ 'overlay-id': string; job_id: string }>(id, { 'cloudlet-overlay-finish': { 'overlay-name': overlayName } });
    return { imageId: r['overlay-id'], jobId: r.job_id };
  }

  /**
   * Move this server's running VM to another cloudlet. `handoffUrl` is the destination's compute
   * endpoint, `destToken` a token valid there (see `CloudletClient.login` against it),
   * `destFingerprint` the destination's certificate when the caller pinned it (a self-signed cloudlet).
   */
  async handoff(id: string, o: { handoffUrl: string; destToken: string; destVmName?: string; destFingerprint?: string }): Promise<{ jobId: string }> {
    const r = await this.serverAction<{ job_id: string }>(id, { 'cloudlet-handoff': { handoff_url: o.handoffUrl, dest_token: o.destToken, dest_vmname: o.destVmName, dest_tls_fingerprint: o.destFingerprint } });
    return { jobId: r.job_id };
  }

  /**
   * A new base VM on this cloudlet, made by its daemon as a job (POST /sandbox/v1/bases, admin):
   * the test guest, a Debian suite built from Debian packages, or a disk image file of the
   * cloudlet's host. Follow it with watchJob (progress), cancel it with cancelJob; the job's result
   * is {base_id, name, image_id, ready_after_ms, origin}.
   */
  async createBase(o: CreateBaseRequest): Promise<{ jobId: string }> {
    const r = await this.call<{ job_id: string }>('cloudlet-sandbox', 'POST', '/bases', { base: o });
    return { jobId: r.job_id };
  }

  async listFlavors(): Promise<Flavor[]> { return (await this.call<{ flavors: Flavor[] }>('compute', 'GET', '/flavors/detail')).flavors; }

  // ---- image (Glance v2) --------------------------------------------------------------------

  async listImages(filters: Record<string, string> = {}): Promise<Image[]> {
    const out: Image[] = [];
    let next: string | undefined = `/v2/images?${new URLSearchParams({ limit: '200', ...filters })}`;
    while (next) {
      const page: ImagePage = await this.call('image', 'GET', next);
      out.push(...page.images);
      next = page.next;
    }
    return out;
  }
  async getImage(id: string): Promise<Image> { return this.call<Image>('image', 'GET', `/v2/images/${enc(id)}`); }
  async createImage(o: { name: string; disk_format?: string; container_format?: string; visibility?: string; [prop: string]: unknown }): Promise<Image> {
    return this.call<Image>('image', 'POST', '/v2/images', { disk_format: 'raw', container_format: 'bare', ...o });
  }
  async deleteImage(id: string): Promise<void> { await this.call('image', 'DELETE', `/v2/images/${enc(id)}`); }
  /** Upload image data (a Blob, bytes or a web ReadableStream). */
  async uploadImageData(id: string, data: Blob | Uint8Array | ReadableStream<Uint8Array>, size?: number): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (size !== undefined) headers['content-length'] = String(size);
    const res = await this.request('image', 'PUT', `/v2/images/${enc(id)}/file`, { headers, body: data as FetchBody, duplex: 'half' });
    await res.arrayBuffer();
  }
  /** Download image data; `range` as [start, endInclusive] asks for part of it (206). */
  async downloadImageData(id: string, o: { range?: [number, number?]; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (o.range) headers.range = `bytes=${o.range[0]}-${o.range[1] ?? ''}`;
    return this.request('image', 'GET', `/v2/images/${enc(id)}/file`, { headers, signal: o.signal });
  }
  /** The manifest of an overlay image, read from its head with two ranged downloads (not the whole file). */
  async readOverlayManifest(id: string, signal?: AbortSignal): Promise<{ manifest: OverlayManifest; overlayId: string }> {
    const range = async (start: number, end: number) => readAtMost(await this.downloadImageData(id, { range: [start, end], signal }), end - start + 1);
    return manifestFromHead(await range(0, HEAD_READ_BYTES - 1), range, { where: `image ${id}`, maxBytes: HEAD_READ_BYTES + LIMITS.manifestBytes });
  }

  /** Bases this cloudlet holds (images with cloudlet_type cloudlet_base_disk): their base IDs. */
  async listBases(): Promise<Image[]> { return this.listImages({ cloudlet_type: 'cloudlet_base_disk' }); }

  // ---- jobs and events (service type "cloudlet") --------------------------------------------

  async getJob(id: string): Promise<Job> { return (await this.call<{ job: Job }>('cloudlet', 'GET', `/jobs/${enc(id)}`)).job; }
  async listJobs(): Promise<Job[]> { return (await this.call<{ jobs: Job[] }>('cloudlet', 'GET', '/jobs')).jobs; }
  async cancelJob(id: string): Promise<void> { await this.call('cloudlet', 'DELETE', `/jobs/${enc(id)}`); }

  /**
   * Follow a job's progress (server-sent events) until it ends; resolves with its end state.
   * Reconnects if the stream breaks before the end (the daemon replays the current state).
   */
  async watchJob(id: string, onProgress: (e: ProgressEvent) => void = () => {}, signal?: AbortSignal): Promise<JobEnd> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.request('cloudlet', 'GET', `/jobs/${enc(id)}/events`, { headers: { accept: 'text/event-stream' }, signal });
        for await (const m of readSse(res.body!, signal)) {
          const d = JSON.parse(m.data);
          if (m.event === 'progress') onProgress(d.event as ProgressEvent);
          else if (m.event === 'end') return d as JobEnd;
          else if (m.event === 'token-ended') throw tokenEnded(d, `following job ${id} (it goes on)`);
        }
      } catch (e) {
        if (signal?.aborted || e instanceof ApiError || isCloudletError(e, 'Unauthorized') || e instanceof CertificateError || attempt >= 5) throw e;
      }
      if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      const j = await this.getJob(id);
      if (j.status !== 'RUNNING') return { job: j.id, status: j.status, error: j.error ?? undefined, fault: j.fault ?? undefined, result: j.result ?? undefined };
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
  }

  /** Follow the change events of this project until `signal` aborts (for event-driven refresh). */
  async watchEvents(onEvent: (e: ChangeEvent) => void, signal: AbortSignal): Promise<void> {
    const res = await this.request('cloudlet', 'GET', '/events', { headers: { accept: 'text/event-stream' }, signal });
    for await (const m of readSse(res.body!, signal)) {
      if (m.event === 'change') onEvent(JSON.parse(m.data) as ChangeEvent);
      else if (m.event === 'token-ended') throw tokenEnded(JSON.parse(m.data), 'watching events');
    }
  }

  /** Poll a server until it leaves BUILD (or reaches `want`); returns it. */
  async waitServer(id: string, want: string[] = ['ACTIVE', 'ERROR', 'SHUTOFF', 'PAUSED'], o: { intervalMs?: number; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Server> {
    const deadline = Date.now() + (o.timeoutMs ?? 600_000);
    for (;;) {
      const s = await this.getServer(id);
      if (want.includes(s.status)) return s;
      if (Date.now() > deadline) throw new CloudletError('Timeout', `server ${id} still ${s.status}`);
      if (o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      await new Promise((r) => setTimeout(r, o.intervalMs ?? 500));
    }
  }

  // ---- plumbing -----------------------------------------------------------------------------

  private serviceUrl(service: Service, path: string): string {
    return /^https?:\/\//.test(path) ? path : this.endpoint(service) + path;
  }

  private async fetchRaw(service: Service, method: string, url: string,
    o: { json?: Body; headers?: Record<string, string>; body?: FetchBody | null; signal?: AbortSignal; anonymous?: boolean; noTimeout?: boolean; duplex?: 'half' }): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...(o.headers ?? {}) };
    if (!o.anonymous && this.session.token) headers['x-auth-token'] = this.session.token;
    let body = o.body;
    if (o.json !== undefined) { headers['content-type'] = 'application/json'; body = JSON.stringify(o.json); }
    const timeout = o.noTimeout ? undefined : AbortSignal.timeout(this.opts.timeoutMs ?? 60_000);
    const signal = o.signal && timeout ? AbortSignal.any([o.signal, timeout]) : o.signal ?? timeout;
    const t0 = Date.now();
    const logged = url.replace(/\?.*$/, '');  // query strings may carry filters; keep the log short
    let res: Response;
    try {
      res = await transportFetch(url, { method, headers, body, signal, ...(o.duplex ? { duplex: o.duplex } : {}) }, this.opts.tls);
    } catch (e) {
      const msg = e instanceof CertificateError ? e.message : fetchFailure(e, url);
      this.opts.onCall?.({ method, service, url: logged, status: 0, ms: Date.now() - t0, error: msg });
      if (e instanceof CertificateError) throw e;
      if (signal?.aborted && o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      if (service === 'identity') {
        throw new CloudletError('Unavailable', `the identity service (Keystone) at ${this.session.authUrl} is not reachable: ${msg}`,
          { hint: 'logging in needs it; tokens already held keep working where a cloudlet validated them recently' });
      }
      throw new CloudletError('Unavailable', `${method} ${logged}: ${msg}`, { hint: 'is the cloudlet running and reachable?' });
    }
    const ms = Date.now() - t0;
    if (res.status >= 400) {
      const text = await res.text().catch(() => '');
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      const message = withoutHint(openstackErrorMessage(parsed) ?? `${res.status} ${res.statusText}`, cloudletFault(parsed)?.hint);
      this.opts.onCall?.({ method, service, url: logged, status: res.status, ms, error: message });
      throw new ApiError(res.status, `${service}: ${message}`, method, logged, parsed);
    }
    this.opts.onCall?.({ method, service, url: logged, status: res.status, ms });
    return res;
  }
}

function enc(s: string): string { return encodeURIComponent(s); }


/** The daemon puts the hint into the OpenStack message too (for OpenStack clients); the error carries it once. */
function withoutHint(message: string, hint: string | undefined): string {
  return hint && message.endsWith(` (${hint})`) ? message.slice(0, -hint.length - 3) : message;
}

/**
 * The Keystone v3 URL behind what a user typed: a Keystone URL (.../v3), a Keystone root (its
 * version document names v3), or a cloudlet daemon's root, whose service list names its identity
 * (the daemon itself, or the fleet's Keystone). Falls back to URL/identity/v3 when nothing answers.
 */
export async function discoverAuthUrl(url: string, o: { timeoutMs?: number; tls?: TlsTrust } = {}): Promise<string> {
  const u = url.replace(/\/+$/, '');
  if (/\/v3$/.test(u)) return u;
  if (/\/identity$/.test(u)) return `${u}/v3`;
  try {
    const res = await transportFetch(`${u}/`, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(o.timeoutMs ?? 15_000) }, o.tls);
    const j = (await res.json()) as { cloudlet?: boolean; services?: Record<string, string>; versions?: { values?: { id?: string; links?: { rel?: string; href?: string }[] }[] } };
    if (j.cloudlet && typeof j.services?.identity === 'string') return normalizeAuthUrl(j.services.identity);
    const v3 = j.versions?.values?.find((v) => typeof v.id === 'string' && v.id.startsWith('v3'));
    const href = v3?.links?.find((l) => l.rel === 'self')?.href;
    if (href) return normalizeAuthUrl(href);
  } catch (e) {
    if (e instanceof CertificateError) throw e;  // a refused certificate is said as such, not guessed past
    /* not answering, or not JSON: guess below */
  }
  return `${u}/identity/v3`;
}

export function normalizeAuthUrl(u: string): string {
  const s = u.replace(/\/+$/, '');
  return /\/v3$/.test(s) ? s : `${s}/v3`;
}

function sessionFrom(authUrl: string, token: string, t: any): Session {
  return {
    authUrl, token, expiresAt: t.expires_at,
    userId: t.user?.id, userName: t.user?.name, projectId: t.project?.id, projectName: t.project?.name,
    roles: (t.roles ?? []).map((r: { name: string }) => r.name), catalog: t.catalog ?? [],
    ...(t.application_credential?.id ? { applicationCredential: { id: String(t.application_credential.id), name: String(t.application_credential.name ?? '') } } : {}),
  };
}
