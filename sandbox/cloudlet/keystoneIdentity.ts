/**
 * Identity from an external Keystone v3, validated the way keystonemiddleware's auth_token does:
 * - the daemon holds its own service token (password auth of a service user, project-scoped),
 *   renewed before it expires and once more when Keystone refuses it;
 * - a user's token is validated with GET /v3/auth/tokens (X-Auth-Token: service token,
 *   X-Subject-Token: the user's token); 404 means unknown, expired or revoked;
 * - a validation is reused for at most `cache_seconds` (token_cache_time) and never past the
 *   token's expiry, so a revoked token is refused everywhere within that bound; refusals are cached
 *   the same way; concurrent checks of one token share one call;
 * - Keystone roles map to the daemon's two roles (member_roles -> member, admin_roles -> admin);
 * - Keystone unreachable: cached validations keep working until they run out, anything else is 503.
 */
import * as crypto from 'crypto';
import type { KeystoneIdentityConfig } from './config';
import type { AuthContext, IdentityProvider } from './context';
import { CloudletError } from '../common/errors';
import type { Logger } from '../common/log';

/** What Keystone said about a token, before this cloudlet's role mapping. */
interface TokenFacts {
  userId: string;
  userName: string;
  projectId?: string;
  projectName?: string;
  roles: string[];
  expiresAt: string;
}

interface CacheEntry { facts?: TokenFacts; until: number }

export interface KeystoneIdentityOptions {
  /** Replaces the global fetch (a TLS-configured transport, a test double). */
  fetch?: typeof fetch;
  now?: () => number;
  /** Per call to Keystone. Default 10 s. */
  timeoutMs?: number;
  /** Most validations kept. Default 10000. */
  maxEntries?: number;
}

/** Renew the service token this long before Keystone would expire it. */
const SERVICE_TOKEN_MARGIN_MS = 60_000;

export class KeystoneIdentity implements IdentityProvider {
  readonly kind = 'keystone';
  readonly externalAuthUrl: string;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<TokenFacts | undefined>>();
  private service?: { token: string; expiresAt: number };
  private serviceLogin?: Promise<string>;
  private readonly fetch: typeof fetch;
  private readonly now: () => number;

  constructor(private readonly cfg: KeystoneIdentityConfig, private readonly log: Logger, private readonly o: KeystoneIdentityOptions = {}) {
    this.externalAuthUrl = cfg.auth_url.replace(/\/+$/, '');
    this.fetch = o.fetch ?? globalThis.fetch;
    this.now = o.now ?? Date.now;
  }

  async validate(token: string): Promise<AuthContext | undefined> {
    const key = crypto.createHash('sha256').update(token).digest('hex');
    const now = this.now();
    const hit = this.cache.get(key);
    let facts: TokenFacts | undefined;
    if (hit && hit.until > now) {
      facts = hit.facts;
    } else {
      if (hit) this.cache.delete(key);
      let p = this.inflight.get(key);
      if (!p) {
        p = this.ask(token).finally(() => this.inflight.delete(key));
        this.inflight.set(key, p);
      }
      facts = await p;
      this.remember(key, facts);
    }
    if (!facts || Date.parse(facts.expiresAt) <= this.now()) return undefined;
    return this.caller(facts, token);
  }

  /** The daemon's roles for what Keystone said; Forbidden when nothing maps or the scope is not a project. */
  private caller(f: TokenFacts, token: string): AuthContext {
    if (!f.projectId || !f.projectName) {
      throw new CloudletError('Forbidden', 'a token scoped to a project is needed here (this one is unscoped, or scoped to a domain or the system)');
    }
    const isAdmin = f.roles.some((r) => this.cfg.admin_roles.includes(r));
    const isMember = isAdmin || f.roles.some((r) => this.cfg.member_roles.includes(r));
    if (!isMember) {
      throw new CloudletError('Forbidden', `user ${f.userName} has no role in project ${f.projectName} that admits it to this cloudlet `
        + `(has: ${f.roles.join(', ') || 'none'}; admitted: ${[...this.cfg.member_roles, ...this.cfg.admin_roles].join(', ')})`);
    }
    return { userId: f.userId, userName: f.userName, projectId: f.projectId, projectName: f.projectName,
      roles: isAdmin ? ['admin', 'member'] : ['member'], isAdmin, expiresAt: f.expiresAt, token };
  }

  private remember(key: string, facts: TokenFacts | undefined): void {
    const now = this.now();
    let until = now + this.cfg.cache_seconds * 1000;
    if (facts) until = Math.min(until, Date.parse(facts.expiresAt));
    if (until <= now) return;
    this.cache.delete(key);
    this.cache.set(key, { facts, until });
    const max = this.o.maxEntries ?? 10_000;
    // Oldest first in a Map: drop from the front.
    while (this.cache.size > max) this.cache.delete(this.cache.keys().next().value!);
  }

  /** One validation at Keystone; undefined for a token Keystone does not accept (404). */
  private async ask(token: string, retried = false): Promise<TokenFacts | undefined> {
    const serviceToken = await this.serviceToken();
    const res = await this.call('GET', '/auth/tokens?nocatalog', { 'x-auth-token': serviceToken, 'x-subject-token': token });
    if (res.status === 404) { await res.body?.cancel(); return undefined; }
    if (res.status === 401 && !retried) {
      // The service token was revoked or expired early: log in again, once.
      await res.body?.cancel();
      this.service = undefined;
      return this.ask(token, true);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      const why = res.status === 401 ? 'Keystone refused this cloudlet\'s service token' : `Keystone does not let service user ${this.cfg.username} validate tokens (give it the "service" role)`;
      this.log.error(`identity: ${why}`);
      throw new CloudletError('Unavailable', `the identity service cannot validate tokens for this cloudlet: ${why}`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new CloudletError('Unavailable', `the identity service at ${this.externalAuthUrl} answered ${res.status} to a token validation`);
    }
    return factsOf(await res.json());
  }

  private async serviceToken(): Promise<string> {
    if (this.service && this.service.expiresAt - SERVICE_TOKEN_MARGIN_MS > this.now()) return this.service.token;
    this.serviceLogin ??= this.login().finally(() => { this.serviceLogin = undefined; });
    return this.serviceLogin;
  }

  private async login(): Promise<string> {
    const c = this.cfg;
    const body = { auth: {
      identity: { methods: ['password'], password: { user: { name: c.username, domain: { name: c.user_domain }, password: c.password } } },
      scope: { project: { name: c.project, domain: { name: c.project_domain } } },
    } };
    const res = await this.call('POST', '/auth/tokens?nocatalog', { 'content-type': 'application/json' }, JSON.stringify(body));
    if (res.status !== 201) {
      await res.body?.cancel();
      const why = res.status === 401 ? `user ${c.username} (project ${c.project}) was refused` : `answer ${res.status}`;
      this.log.error(`identity: the cloudlet's service login at ${this.externalAuthUrl} failed: ${why}`);
      throw new CloudletError('Unavailable', `the identity service refused this cloudlet's service credentials (${why}); tokens cannot be validated`);
    }
    const token = res.headers.get('x-subject-token');
    const j = (await res.json()) as { token?: { expires_at?: string } };
    const expiresAt = Date.parse(j.token?.expires_at ?? '');
    if (!token || !Number.isFinite(expiresAt)) throw new CloudletError('Unavailable', `${this.externalAuthUrl} gave no usable service token`);
    this.service = { token, expiresAt };
    return token;
  }

  private async call(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Response> {
    try {
      return await this.fetch(this.externalAuthUrl + path, {
        method, body, headers: { accept: 'application/json', ...headers }, signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = (e as Error).name === 'TimeoutError' ? 'timed out' : cause?.code ?? cause?.message ?? (e as Error).message;
      throw new CloudletError('Unavailable', `the identity service at ${this.externalAuthUrl} is not reachable (${why}); `
        + `only tokens validated here in the last ${this.cfg.cache_seconds} s are accepted until it is back`);
    }
  }
}

function factsOf(j: unknown): TokenFacts {
  const t = (j as { token?: Record<string, any> })?.token;
  const s = (v: unknown) => (typeof v === 'string' ? v : '');
  if (!t || !s(t.user?.id) || !Number.isFinite(Date.parse(s(t.expires_at)))) {
    throw new CloudletError('Unavailable', 'the identity service answered a token validation with a body that is not a Keystone token');
  }
  const roles = Array.isArray(t.roles) ? t.roles.map((r: { name?: unknown }) => s(r?.name)).filter(Boolean) : [];
  return {
    userId: s(t.user.id), userName: s(t.user.name) || s(t.user.id),
    projectId: s(t.project?.id) || undefined, projectName: s(t.project?.name) || undefined,
    roles, expiresAt: s(t.expires_at),
  };
}
