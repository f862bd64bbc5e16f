/**
 * A client of one OCI distribution registry (the /v2/ API): ping, auth (anonymous, basic, bearer
 * token flow), blobs (HEAD, GET verified while streaming, upload sessions, cross-repo mount) and
 * manifests. Transport: undici with an optional custom CA; transient failures are retried with
 * bounded back-off. Upload sessions are driven by BlobUploader, which owns resume logic.
 */
import * as crypto from 'crypto';
import { Agent, Dispatcher, request } from 'undici';
import type { AddressPolicy } from '../common/addressPolicy';
import { guardedAgent } from '../common/guardedAgent';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { createLogger, Logger } from '../common/log';
import { AuthChallenge, parseAuthChallenge } from './authChallenge';
import { Credentials, lookupCredentials } from './credentials';
import { checkDigest } from './digest';
import { MANIFEST_ACCEPT } from './mediaTypes';
import { DEFAULT_RETRY, errorCode, RetryPolicy, TransientHttpError, withRetries } from './retry';

export interface RegistryClientOptions {
  /** undefined: look the registry up in the Docker credentials file; null: anonymous. */
  credentials?: Credentials | null;
  /** PEM of extra CA certificate(s) to trust for this registry's TLS. */
  ca?: string | Buffer;
  /** 'auto' (default): HTTPS, falling back to plain HTTP only for loopback hosts that do not speak TLS. */
  plainHttp?: boolean | 'auto';
  retry?: Partial<RetryPolicy>;
  signal?: AbortSignal;
  log?: Logger;
  /** Only these addresses may be connected to (a daemon pulling for a caller's overlay_url). */
  addressPolicy?: AddressPolicy;
  /**
   * The looked-up login (credentials undefined) is not the caller's: a daemon pulling for a project
   * with its operator's login. Refusals then say "the cloudlet's login", no username and no hint.
   */
  lookedUpLoginIsPrivate?: boolean;
}

/** Counters every command reports: what went over the wire and how often we had to retry. */
export interface TransferStats {
  requests: number;
  retries: number;
  bytesSent: number;       // request bodies written (blobs and manifests), retries included
  bytesReceived: number;   // blob and manifest bodies read
}

export interface SendOptions {
  headers?: Record<string, string>;
  body?: Buffer;
  /** Token scopes this request needs, e.g. ['repository:team/app:pull,push']. */
  scopes?: string[];
  /** Retry transient failures here (default true). Upload steps say false and resume themselves. */
  retry?: boolean;
  what?: string;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/i;

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** The registry's own error text, e.g. "MANIFEST_INVALID: manifest invalid". */
function registryErrorText(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(j.errors) && j.errors.length) return j.errors.map((e) => `${e.code}: ${e.message}`).join('; ');
  } catch { /* not JSON */ }
  return body.toString('utf8').slice(0, 200).trim();
}

/** Manifests, tag lists and error answers are read whole: at most this many bytes (a manifest's own limit is 4 MiB). */
const RESPONSE_CAP = 8 * 1024 * 1024;

/** A response body read into memory, refused (the rest unread) once it passes `cap` bytes. */
async function readCapped(body: Dispatcher.ResponseData['body'], cap: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > cap) {
      body.destroy();
      throw new CloudletError('BadInput', `${what} is larger than ${cap} bytes; refused`);
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, size);
}

export class RegistryClient {
  readonly registry: string;
  readonly stats: TransferStats = { requests: 0, retries: 0, bytesSent: 0, bytesReceived: 0 };
  readonly retryPolicy: RetryPolicy;
  readonly signal?: AbortSignal;
  private readonly agent: Agent;
  private readonly credentials?: Credentials;
  private readonly privateLogin: boolean;           // the login is the operator's: never named to the caller
  private readonly plainHttp: boolean | 'auto';
  private readonly log: Logger;
  private base?: string;                             // scheme://host, decided on first use
  private basicAuth = false;                         // registry asked for Basic
  private bearer?: AuthChallenge;                    // registry asked for Bearer
  private readonly tokens = new Map<string, Promise<string>>(); // scope set -> bearer token (shared by parallel requests)

  constructor(registry: string, opts: RegistryClientOptions = {}) {
    this.registry = registry.toLowerCase();
    this.credentials = opts.credentials === null ? undefined : opts.credentials ?? lookupCredentials(this.registry);
    this.privateLogin = opts.credentials === undefined && !!opts.lookedUpLoginIsPrivate;
    this.plainHttp = opts.plainHttp ?? 'auto';
    this.retryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
    this.signal = opts.signal;
    this.log = opts.log ?? createLogger('registry');
    const agentOptions = { keepAliveTimeout: 10_000, connections: 8, headersTimeout: 60_000, bodyTimeout: 60_000 };
    this.agent = opts.addressPolicy
      ? guardedAgent(opts.addressPolicy, { ...agentOptions, ca: opts.ca })
      : new Agent({ connect: opts.ca ? { ca: opts.ca } : {}, ...agentOptions });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  get hasCredentials(): boolean {
    return !!this.credentials;
  }

  /** Resolves a Location header (absolute or relative) against the registry. */
  resolve(location: string): string {
    return new URL(location, this.base).toString();
  }

  /** Decides HTTPS vs HTTP and checks that this is a registry (GET /v2/). Idempotent. */
  async ping(): Promise<{ url: string; challenge?: AuthChallenge }> {
    if (!this.base) this.base = await this.chooseScheme();
    const r = await this.send('GET', '/v2/', { what: `ping of ${this.registry}` });
    if (r.status !== 200) throw this.fail(r, `ping of ${this.registry}`);
    return { url: this.base };
  }

  private async chooseScheme(): Promise<string> {
    const https = `https://${this.registry}`;
    if (this.plainHttp === true) return `http://${this.registry}`;
    if (this.plainHttp === false || !LOOPBACK.test(this.registry)) return https;
    try {
      await withRetries({ policy: this.retryPolicy, signal: this.signal, what: `connection to ${this.registry}`,
        onRetry: () => this.stats.retries++ }, async () => {
        const r = await request(`${https}/v2/`, { dispatcher: this.agent, signal: this.signal });
        await r.body.dump();
      });
      return https;
    } catch (e) {
      // A loopback registry answering plain HTTP to a TLS hello: use HTTP (Docker treats localhost the same way).
      const code = errorCode(e) ?? '';
      const msg = e instanceof Error ? e.message : '';
      if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/i.test(msg)) {
        return `http://${this.registry}`;
      }
      throw this.translateNetworkError(e);
    }
  }

  /** TLS trust failures get a message that says which CA to pass. */
  private translateNetworkError(e: unknown): unknown {
    const code = errorCode(e) ?? '';
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
      return new CloudletError('Unavailable', `the TLS certificate of registry ${this.registry} is not trusted (${code})`, {
        hint: 'pass the registry\'s CA certificate with --ca FILE (or CLOUDLET_REGISTRY_CA)', cause: e,
      });
    }
    return e;
  }

  /** One request with auth; retried on transient failures unless opts.retry is false. */
  async send(method: Dispatcher.HttpMethod, pathOrUrl: string, opts: SendOptions = {}): Promise<Response> {
    if (!this.base) this.base = await this.chooseScheme();
    const what = opts.what ?? `${method} ${pathOrUrl.split('?')[0]} on ${this.registry}`;
    const once = () => this.sendAuthorized(method, pathOrUrl, opts);
    if (opts.retry === false) return once();
    return withRetries({ policy: this.retryPolicy, signal: this.signal, what,
      onRetry: (e, n, d) => { this.stats.retries++; this.log.debug(`${what}: retry ${n} in ${d} ms`, String(errorCode(e) ?? e)); } }, once);
  }

  private async sendAuthorized(method: Dispatcher.HttpMethod, pathOrUrl: string, opts: SendOptions): Promise<Response> {
    let r = await this.rawSend(method, pathOrUrl, opts, await this.authorization(opts.scopes ?? []));
    if (r.status === 401) {
      const challenge = parseAuthChallenge(r.headers['www-authenticate']);
      await this.answerChallenge(challenge, opts.scopes ?? []);
      r = await this.rawSend(method, pathOrUrl, opts, await this.authorization(opts.scopes ?? []));
      if (r.status === 401) throw this.unauthorized();
    }
    if (r.status >= 500 || r.status === 429) {
      throw new TransientHttpError(r.status, `HTTP ${r.status} from ${this.registry}: ${registryErrorText(r.body)}`);
    }
    return r;
  }

  private async rawSend(method: Dispatcher.HttpMethod, pathOrUrl: string, opts: SendOptions, auth?: string): Promise<Response> {
    throwIfCancelled(this.signal);
    const url = this.resolve(pathOrUrl);
    const headers: Record<string, string> = { 'user-agent': 'cloudlet-toolkit', ...opts.headers };
    if (auth) headers.authorization = auth;
    this.stats.requests++;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, { method, headers, body: opts.body, dispatcher: this.agent, signal: this.signal });
    } catch (e) {
      if (this.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      throw this.translateNetworkError(e);
    }
    if (opts.body) this.stats.bytesSent += opts.body.length;
    const body = method === 'HEAD' ? (await res.body.dump(), Buffer.alloc(0)) : await readCapped(res.body, RESPONSE_CAP, `${this.registry}'s answer to ${method} ${pathOrUrl}`);
    this.stats.bytesReceived += body.length;
    return { status: res.statusCode, headers: res.headers, body };
  }

  private unauthorized(): CloudletError {
    if (this.credentials && this.privateLogin) return new CloudletError('Unauthorized', `registry ${this.registry} refused the cloudlet's login`);
    return this.credentials
      ? new CloudletError('Unauthorized', `registry ${this.registry} refused the username or password for "${this.credentials.username}"`, {
        hint: `log in again with: cloudlet registry login ${this.registry}`,
      })
      : new CloudletError('Unauthorized', `registry ${this.registry} requires a login`, {
        hint: `log in with: cloudlet registry login ${this.registry}`,
      });
  }

  private async authorization(scopes: string[]): Promise<string | undefined> {
    if (this.bearer) {
      // Once the registry has said it wants tokens, get one per scope set before asking.
      const key = scopeKey(scopes);
      let token = this.tokens.get(key);
      if (!token) {
        token = this.fetchToken(this.bearer, scopes);
        this.tokens.set(key, token);
        token.catch(() => this.tokens.delete(key));
      }
      return `Bearer ${await token}`;
    }
    if (this.basicAuth && this.credentials) return this.credentials.basicHeader();
    return undefined;
  }

  private async answerChallenge(challenge: AuthChallenge | undefined, scopes: string[]): Promise<void> {
    if (challenge?.scheme === 'basic') {
      if (!this.credentials || this.basicAuth) throw this.unauthorized();
      this.basicAuth = true;
      return;
    }
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      // Keep the realm and service; the scope differs per request.
      this.bearer = { scheme: 'bearer', params: { realm: challenge.params.realm, service: challenge.params.service ?? '' } };
      const token = this.fetchToken(challenge, scopes);
      this.tokens.set(scopeKey(scopes), token);
      token.catch(() => this.tokens.delete(scopeKey(scopes)));
      await token;
      return;
    }
    throw new CloudletError('Unauthorized', `registry ${this.registry} asked for an authentication scheme this client does not speak (${challenge?.scheme ?? 'none'})`);
  }

  /** Bearer token flow (distribution's token spec): GET realm?service=&scope= with Basic credentials. */
  private async fetchToken(challenge: AuthChallenge, scopes: string[]): Promise<string> {
    const url = new URL(challenge.params.realm);
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    const all = new Set(scopes);
    if (challenge.params.scope) for (const s of challenge.params.scope.split(' ')) all.add(s);
    for (const s of all) url.searchParams.append('scope', s);
    const headers: Record<string, string> = { 'user-agent': 'cloudlet-toolkit' };
    if (this.credentials) headers.authorization = this.credentials.basicHeader();
    this.stats.requests++;
    const res = await request(url, { headers, dispatcher: this.agent, signal: this.signal });
    const body = await readCapped(res.body, RESPONSE_CAP, `token server ${url.host}'s answer`);
    if (res.statusCode === 401 || res.statusCode === 403) throw this.unauthorized();
    if (res.statusCode >= 500) throw new TransientHttpError(res.statusCode, `token server ${url.host}: HTTP ${res.statusCode}`);
    if (res.statusCode !== 200) throw new CloudletError('Unauthorized', `token server ${url.host} answered HTTP ${res.statusCode}`);
    let j: { token?: string; access_token?: string };
    try { j = JSON.parse(body.toString('utf8')); } catch { j = {}; }
    const token = j.token ?? j.access_token;
    if (!token) throw new CloudletError('Unauthorized', `token server ${url.host} returned no token`);
    return token;
  }

  /** A clear error for an unexpected answer (not 401/5xx, which are handled in send). */
  fail(r: Response, what: string): CloudletError {
    const text = registryErrorText(r.body);
    if (r.status === 404) return new CloudletError('NotFound', `${what}: not found on ${this.registry} (${text || 'HTTP 404'})`);
    if (r.status === 403) return new CloudletError('Forbidden', `${what}: registry ${this.registry} denied access (${text || 'HTTP 403'})`);
    return new CloudletError('BadInput', `${what}: registry ${this.registry} answered HTTP ${r.status}${text ? ` (${text})` : ''}`);
  }

  // ---- blobs

  /** Size of the blob when the repository has it, undefined when not. */
  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const r = await this.send('HEAD', `/v2/${repo}/blobs/${checkDigest(digest)}`, { scopes: [pullScope(repo)] });
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw this.fail(r, `blob check of ${digest}`);
    return Number(header(r.headers, 'content-length') ?? NaN);
  }

  /**
   * Downloads a blob, hashing while it streams and stopping as soon as it exceeds `expectedSize`.
   * A digest mismatch is a Corrupt error naming the digest; nothing is returned for it.
   * Transient failures are retried from the start of the blob.
   */
  async fetchBlob(repo: string, digest: string, expectedSize: number, onBytes?: (n: number) => void): Promise<Buffer> {
    checkDigest(digest);
    const what = `download of ${digest} from ${this.registry}/${repo}`;
    return withRetries({ policy: this.retryPolicy, signal: this.signal, what,
      onRetry: (e, n, d) => { this.stats.retries++; this.log.debug(`${what}: retry ${n} in ${d} ms`, String(errorCode(e) ?? e)); } },
    async () => {
      let url = `/v2/${repo}/blobs/${digest}`;
      let auth = await this.authorization([pullScope(repo)]);
      for (let hop = 0; hop < 5; hop++) {
        this.stats.requests++;
        const headers: Record<string, string> = { 'user-agent': 'cloudlet-toolkit' };
        if (auth) headers.authorization = auth;
        let res: Dispatcher.ResponseData;
        try {
          res = await request(this.resolve(url), { headers, dispatcher: this.agent, signal: this.signal });
        } catch (e) {
          if (this.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
          throw this.translateNetworkError(e);
        }
        if (res.statusCode === 401 && hop === 0) {
          await res.body.dump();
          await this.answerChallenge(parseAuthChallenge(res.headers['www-authenticate']), [pullScope(repo)]);
          auth = await this.authorization([pullScope(repo)]);
          continue;
        }
        if ([301, 302, 303, 307, 308].includes(res.statusCode) && res.headers.location) {
          // Storage back-ends redirect to a signed URL: follow without our Authorization.
          await res.body.dump();
          url = this.resolve(String(res.headers.location));
          auth = undefined;
          continue;
        }
        if (res.statusCode !== 200) {
          const body = await readCapped(res.body, RESPONSE_CAP, `${this.registry}'s answer to GET ${url}`);
          const r = { status: res.statusCode, headers: res.headers, body };
          if (r.status === 401) throw this.unauthorized();
          if (r.status >= 500 || r.status === 429) throw new TransientHttpError(r.status, registryErrorText(body));
          throw this.fail(r, what);
        }
        return await this.readVerified(res.body, digest, expectedSize, onBytes);
      }
      throw new CloudletError('BadInput', `${what}: too many redirects`);
    });
  }

  private async readVerified(body: Dispatcher.ResponseData['body'], digest: string, expectedSize: number,
    onBytes?: (n: number) => void): Promise<Buffer> {
    const hash = crypto.createHash('sha256');
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      this.stats.bytesReceived += chunk.length;
      if (size > expectedSize) {
        body.destroy();
        throw new CloudletError('Corrupt', `blob ${digest} from ${this.registry} is larger than its declared ${expectedSize} bytes; refused`);
      }
      hash.update(chunk);
      parts.push(chunk);
      onBytes?.(chunk.length);
    }
    const got = 'sha256:' + hash.digest('hex');
    if (size !== expectedSize || got !== digest) {
      throw new CloudletError('Corrupt', `blob ${digest} from ${this.registry} failed verification: ` +
        (size !== expectedSize ? `${size} bytes instead of ${expectedSize}` : `its content hashes to ${got}`), {
        hint: 'the registry\'s copy is damaged or was altered; republish the overlay',
      });
    }
    return Buffer.concat(parts, size);
  }

  // ---- manifests

  async putManifest(repo: string, reference: string, body: Buffer, mediaType: string): Promise<string> {
    const r = await this.send('PUT', `/v2/${repo}/manifests/${reference}`, {
      body, headers: { 'content-type': mediaType }, scopes: [pushScope(repo)], what: `manifest upload to ${this.registry}/${repo}`,
    });
    if (r.status !== 201) throw this.fail(r, `manifest upload to ${this.registry}/${repo}:${reference}`);
    return header(r.headers, 'docker-content-digest') ?? '';
  }

  /** Fetches a manifest by tag or digest; when asked by digest the bytes are verified against it. */
  async getManifest(repo: string, reference: string): Promise<{ mediaType: string; body: Buffer; digest: string }> {
    const what = `manifest ${this.registry}/${repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const r = await this.send('GET', `/v2/${repo}/manifests/${reference}`, {
      headers: { accept: MANIFEST_ACCEPT }, scopes: [pullScope(repo)], what: `download of ${what}`,
    });
    if (r.status !== 200) throw this.fail(r, what);
    if (r.body.length > 4 * 1024 * 1024) throw new CloudletError('BadInput', `${what} is larger than 4 MiB; refused`);
    const digest = 'sha256:' + crypto.createHash('sha256').update(r.body).digest('hex');
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new CloudletError('Corrupt', `${what} failed verification: its content hashes to ${digest}`);
    }
    let mediaType = (header(r.headers, 'content-type') ?? '').split(';')[0].trim();
    try {
      const j = JSON.parse(r.body.toString('utf8')) as { mediaType?: string };
      if (typeof j.mediaType === 'string') mediaType = j.mediaType;
    } catch {
      throw new CloudletError('BadInput', `${what} is not JSON`);
    }
    return { mediaType, body: r.body, digest };
  }
}

export function pullScope(repo: string): string {
  return `repository:${repo}:pull`;
}

export function pushScope(repo: string): string {
  return `repository:${repo}:pull,push`;
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}
