/**
 * Which cloudlets the user works with and a signed-in session for each. Endpoints live in settings
 * (`cloudlet.cloudlets`), passwords and application credential secrets in SecretStorage; the local
 * sandbox daemon is the cloudlet named "local". Sessions are made by a `Connector` (the real one
 * wraps sandbox/client).
 */
import type { ApiCallRecord, ApplicationCredentialRef, CloudletSession, Credentials } from './api';
import { CloudletError } from '../sandbox/client';

export interface CloudletConfig {
  name: string;
  url: string;
  /** The user (a password login), or the owner of an application credential named by name. */
  username: string;
  /** The project of a password login ('' for an application credential: it fixes the project). */
  project: string;
  /** Log in with this application credential (its secret in SecretStorage) instead of a password. */
  applicationCredential?: ApplicationCredentialRef;
  /** HTTPS certificates trusted on first use: "HOST:PORT" -> SHA-256 fingerprint (not secret). */
  pins?: Record<string, string>;
  /** A fleet login: the regions its Keystone's catalog had at the last login (each shown as NAME/REGION). */
  regions?: string[];
  /** Set on the entries list() makes of a fleet's regions: the login they belong to and their region. */
  fleet?: string;
  region?: string;
}

export type Connector = (url: string, creds: Credentials, onCall: (c: ApiCallRecord) => void, pins?: Record<string, string>) => Promise<CloudletSession>;

export interface SecretStore {
  get(key: string): Thenable<string | undefined> | Promise<string | undefined>;
  store(key: string, value: string): Thenable<void> | Promise<void>;
  delete(key: string): Thenable<void> | Promise<void>;
}

export interface ConfigStore {
  list(): CloudletConfig[];
  save(list: CloudletConfig[]): Promise<void>;
}

export const LOCAL = 'local';
export const secretKey = (name: string) => `cloudlet.password/${name}`;

export function validateCloudletName(name: string, existing: CloudletConfig[]): string | undefined {
  if (!name.trim()) return 'A name is needed';
  if (name === LOCAL) return '"local" is the sandbox daemon';
  if (!/^[\w.-]+$/.test(name)) return 'Use letters, digits, dot, dash, underscore';
  if (existing.some((c) => c.name === name)) return `A cloudlet named ${name} exists already`;
  return undefined;
}

export function validateUrl(url: string): string | undefined {
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'An http:// or https:// URL';
    return undefined;
  } catch {
    return 'Not a URL (e.g. http://127.0.0.2:8774)';
  }
}

/** An application credential reference from settings (hostile until checked), or undefined. */
export function applicationCredentialOf(x: unknown): ApplicationCredentialRef | undefined {
  if (!x || typeof x !== 'object') return undefined;
  const { id, name } = x as Record<string, unknown>;
  const ok = (v: unknown): v is string => typeof v === 'string' && v.trim().length > 0 && v.length <= 255;
  if (ok(id)) return { id: id.trim() };
  if (ok(name)) return { name };
  return undefined;
}

/** What is missing from a login's settings for it to log in, or undefined. */
export function validateLogin(c: Pick<CloudletConfig, 'username' | 'applicationCredential'>): string | undefined {
  const a = c.applicationCredential;
  if (!a) return c.username.trim() ? undefined : 'A user name is needed';
  if (a.id?.trim()) return /\s/.test(a.id.trim()) ? 'An application credential ID has no spaces' : undefined;
  if (!a.name?.trim()) return 'An application credential is named by its ID, or by its name and its user';
  return c.username.trim() ? undefined : `The user who owns application credential ${a.name} is needed`;
}

/** The login a saved cloudlet makes with its stored secret (a password, or an application credential's secret). */
export function credentialsOf(c: CloudletConfig, secret: string): Credentials {
  return c.applicationCredential
    ? { username: c.username, password: secret, project: '', applicationCredential: c.applicationCredential }
    : { username: c.username, password: secret, project: c.project };
}

export class Cloudlets {
  private sessions = new Map<string, Promise<CloudletSession>>();
  /** A fleet region's compute endpoint, noted at its first session: where its servers' ports are. */
  private regionEndpoints = new Map<string, string>();

  constructor(
    private readonly connector: Connector,
    private readonly config: ConfigStore,
    private readonly secrets: SecretStore,
    private readonly local: { url: () => Promise<string>; credentials: () => Credentials | undefined },
    private readonly onCall: (c: ApiCallRecord) => void,
  ) {}

  /**
   * The cloudlets to show and pick: each configured one, except that a fleet login (several regions
   * in its catalog) stands for its regions, named LOGIN/REGION.
   */
  list(): CloudletConfig[] {
    return this.config.list().flatMap((c) => (c.regions && c.regions.length > 1
      ? c.regions.map((r) => ({ ...c, name: `${c.name}/${r}`, fleet: c.name, region: r, regions: undefined }))
      : [c]));
  }

  /** A configured login by its name, or by the name of one of its regions (LOGIN/REGION). */
  find(name: string): CloudletConfig | undefined {
    return this.config.list().find((c) => c.name === name) ?? this.list().find((c) => c.name === name);
  }

  /**
   * The URL whose host a cloudlet's servers answer on (forwarded ports bound to a wildcard address):
   * its own URL, or for a fleet region its compute endpoint (the Keystone's host is not the region's).
   */
  hostUrl(name: string): string | undefined {
    return this.regionEndpoints.get(name) ?? this.find(name)?.url;
  }

  /** The login a cloudlet name belongs to (a region's fleet login, or itself). */
  loginOf(name: string): string { return this.find(name)?.fleet ?? name; }

  /** Saves a cloudlet; `password` is the user's password or the application credential's secret. */
  async add(c: CloudletConfig, password: string): Promise<void> {
    const problem = validateCloudletName(c.name, this.config.list()) ?? validateUrl(c.url) ?? validateLogin(c)
      ?? (c.applicationCredential && !password ? 'The application credential\'s secret is needed' : undefined);
    if (problem) throw new CloudletError('BadInput', problem);
    await this.secrets.store(secretKey(c.name), password);
    await this.config.save([...this.config.list(), { ...c, url: c.url.replace(/\/$/, '') }]);
    this.forget(c.name);
  }

  /** A new login for a saved cloudlet: a user (password) or an application credential, with its secret. */
  async updateCredentials(name: string, who: Pick<CloudletConfig, 'username' | 'applicationCredential'> & { project?: string }, password: string): Promise<void> {
    const problem = validateLogin(who);
    if (problem) throw new CloudletError('BadInput', problem);
    const login = this.loginOf(name);
    const list = this.config.list().map((c) => {
      if (c.name !== login) return c;
      const { applicationCredential: _old, ...rest } = c;
      return who.applicationCredential ? { ...rest, username: who.username, project: '', applicationCredential: who.applicationCredential } : { ...rest, username: who.username, project: who.project ?? (c.project || who.username) };
    });
    await this.secrets.store(secretKey(login), password);
    await this.config.save(list);
    this.forget();
  }

  /** Trusts the certificate `fingerprint` at `host` ("HOST:PORT") for cloudlet `name` (trust on first use). */
  async pin(name: string, host: string, fingerprint: string): Promise<void> {
    const login = this.loginOf(name);
    const list = this.config.list().map((c) => (c.name === login ? { ...c, pins: { ...c.pins, [host]: fingerprint } } : c));
    await this.config.save(list);
    this.forget();
  }

  /** Removes a configured cloudlet (for a fleet region: the whole fleet login). */
  async remove(name: string): Promise<void> {
    const login = this.loginOf(name);
    await this.config.save(this.config.list().filter((c) => c.name !== login));
    await this.secrets.delete(secretKey(login));
    this.forget();
  }

  /** Drops a cached session (after a 401, a settings change, a retry). */
  forget(name?: string): void {
    if (name === undefined) { this.sessions.clear(); return; }
    // A fleet's regions share its login: a region's expired token is the login's.
    const login = this.loginOf(name);
    for (const k of [...this.sessions.keys()]) if (k === name || k === login || k.startsWith(`${login}/`)) this.sessions.delete(k);
  }

  /** A signed-in session; logs in on first use. A failed login is not cached. */
  session(name: string): Promise<CloudletSession> {
    let s = this.sessions.get(name);
    if (!s) {
      s = this.connect(name);
      this.sessions.set(name, s);
      s.catch(() => { if (this.sessions.get(name) === s) this.sessions.delete(name); });
    }
    return s;
  }

  private async connect(name: string): Promise<CloudletSession> {
    if (name === LOCAL) {
      const url = await this.local.url();
      const creds = this.local.credentials();
      if (!creds) throw new CloudletError('Unauthorized', 'No credentials for the local daemon (its admin.password file is missing)');
      return this.connector(url, creds, this.onCall);
    }
    const c = this.find(name);
    if (!c) throw new CloudletError('NotFound', `No cloudlet named ${name} is configured`);
    // A region of a fleet: the fleet's one login, in that region (the user's own token there too).
    if (c.fleet && c.region) {
      const fleet = await this.session(c.fleet);
      if (!fleet.inRegion) throw new CloudletError('BadInput', `${c.fleet} is not a fleet login`);
      const s = fleet.inRegion(c.region);
      const compute = (() => { try { return s.computeEndpoint?.(); } catch { return undefined; } })();
      if (compute) this.regionEndpoints.set(name, compute);
      return s;
    }
    // An expired token lands here again (forget() after a 401): the stored secret logs in anew.
    const secret = await this.secrets.get(secretKey(name));
    if (secret === undefined) throw new CloudletError('Unauthorized', `No ${c.applicationCredential ? 'application credential secret' : 'password'} stored for cloudlet ${name}`, { hint: 'Run "Cloudlet: Update Credentials..."' });
    const s = await this.connector(c.url, credentialsOf(c, secret), this.onCall, c.pins);
    await this.noteRegions(c.name, s.regions?.() ?? []);
    return s;
  }

  /** Keeps a login's regions in its settings entry (the views list them), when they changed. */
  private async noteRegions(name: string, regions: string[]): Promise<void> {
    const list = this.config.list();
    const c = list.find((x) => x.name === name);
    const now = [...regions].sort();
    if (!c || JSON.stringify(c.regions ?? []) === JSON.stringify(now)) return;
    await this.config.save(list.map((x) => (x.name === name ? { ...x, regions: now.length ? now : undefined } : x)));
  }
}
