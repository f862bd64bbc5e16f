/**
 * The daemon's config file (YAML): users, projects, roles, token lifetime, capacity.
 *
 *   token_ttl_seconds: 3600
 *   max_servers: 8                  # capacity: more running VMs than this -> 503 / ERROR
 *   overlay_max_bytes: 4294967296   # size cap of an overlay fetched from overlay_url
 *   projects: [demo, other]
 *   registry_logins:                # projects (IDs; names only with the embedded identity) that may pull oci:// overlays with this daemon user's own
 *     registry.example:5000: [demo] # Docker login ($DOCKER_CONFIG/config.json); others send their own or go anonymous
 *   users:
 *     - name: admin
 *       password: secret            # plaintext here is hashed before it is stored ...
 *       roles: { admin: [admin, member] }
 *     - name: alice
 *       password_hash: scrypt$...   # ... or give the hash (`cloudlet serve --hash-password`)
 *       roles: { demo: [member] }
 *
 * With no config file, one user `admin` in project `admin` with roles admin+member is made, its
 * password generated once and kept in <data>/admin.password (mode 0600) for local tools.
 *
 * A cloudlet of a fleet takes its users from an external Keystone instead (no `users` then):
 *
 *   region: edge1                   # this cloudlet's region in the catalog (default RegionOne)
 *   identity:
 *     provider: keystone            # default: embedded (the users above)
 *     auth_url: https://keystone.example:5000/v3
 *     username: cloudlet            # the service user that validates tokens (role "service")
 *     password_file: keystone.password   # relative to this file; or password: ...
 *     project: service
 *     user_domain: Default
 *     project_domain: Default
 *     cache_seconds: 300            # how long a validation is reused (keystonemiddleware's token_cache_time)
 *     member_roles: [member]        # Keystone roles that make a caller a member here ...
 *     admin_roles: [admin]          # ... or an admin
 *     register_region: false        # at start, put this cloudlet's endpoints in the catalog (needs admin)
 */
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import * as YAML from 'yaml';
import { CloudletError } from '../common/errors';
import { AddressPolicy, DEFAULT_OVERLAY_NETWORKS } from '../common/addressPolicy';

export interface UserConfig {
  name: string;
  password?: string;
  password_hash?: string;
  /** project name -> role names */
  roles: Record<string, string[]>;
}

export interface KeystoneIdentityConfig {
  provider: 'keystone';
  auth_url: string;
  username: string;
  password: string;
  project: string;
  user_domain: string;
  project_domain: string;
  cache_seconds: number;
  member_roles: string[];
  admin_roles: string[];
  register_region: boolean;
}

export type IdentityConfig = { provider: 'embedded' } | KeystoneIdentityConfig;

export interface DaemonConfig {
  token_ttl_seconds: number;
  max_servers: number;
  overlay_max_bytes: number;
  projects: string[];
  users: UserConfig[];
  /** Address ranges an overlay_url may lead to (default: public and loopback). */
  overlay_url_networks?: string[];
  /** This cloudlet's region name in the catalog (default RegionOne). */
  region?: string;
  /** Default: embedded. */
  identity?: IdentityConfig;
  /**
   * Registry host[:port] (lower case) -> projects (names or IDs) whose oci:// syntheses may use the
   * daemon user's own Docker login for it when the request brings none. Absent: admins only.
   */
  registry_logins?: Record<string, string[]>;
}

/** Region names as Keystone stores them: an id of at most 255 characters, here kept to a safe alphabet. */
export const REGION_RE = /^[A-Za-z0-9][\w.-]{0,63}$/;

export const DEFAULTS = { token_ttl_seconds: 3600, max_servers: 8, overlay_max_bytes: 8 * 1024 ** 3 };

export function parseConfig(text: string, source = 'config', dir = process.cwd()): DaemonConfig {
  let raw: any;
  try { raw = YAML.parse(text) ?? {}; } catch (e) {
    throw new CloudletError('BadInput', `${source}: not valid YAML: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new CloudletError('BadInput', `${source}: expected a mapping at the top`);
  const users: UserConfig[] = [];
  for (const [i, u] of ((raw.users ?? []) as any[]).entries()) {
    if (!u || typeof u.name !== 'string' || !u.name) throw new CloudletError('BadInput', `${source}: users[${i}] needs a name`);
    if (typeof u.password !== 'string' && typeof u.password_hash !== 'string') {
      throw new CloudletError('BadInput', `${source}: user ${u.name} needs password or password_hash`);
    }
    const roles: Record<string, string[]> = {};
    for (const [p, r] of Object.entries(u.roles ?? {})) roles[p] = Array.isArray(r) ? r.map(String) : [String(r)];
    if (!Object.keys(roles).length) throw new CloudletError('BadInput', `${source}: user ${u.name} has no roles in any project`);
    users.push({ name: u.name, password: u.password, password_hash: u.password_hash, roles });
  }
  const projects = new Set<string>(((raw.projects ?? []) as unknown[]).map(String));
  for (const u of users) for (const p of Object.keys(u.roles)) projects.add(p);
  const num = (k: keyof typeof DEFAULTS) => {
    const v = raw[k] ?? DEFAULTS[k];
    if (typeof v !== 'number' || !(v > 0)) throw new CloudletError('BadInput', `${source}: ${k} must be a positive number`);
    return v;
  };
  const region = raw.region ?? 'RegionOne';
  if (typeof region !== 'string' || !REGION_RE.test(region)) throw new CloudletError('BadInput', `${source}: region must be a name of letters, digits, '.', '_' or '-' (at most 64)`);
  const identity = parseIdentity(raw.identity, source, dir);
  if (identity.provider === 'keystone' && users.length) {
    throw new CloudletError('BadInput', `${source}: with identity.provider keystone the users come from Keystone; remove the users list`);
  }
  return {
    token_ttl_seconds: num('token_ttl_seconds'), max_servers: num('max_servers'), overlay_max_bytes: num('overlay_max_bytes'),
    projects: [...projects], users, region, identity, overlay_url_networks: parseNetworks(raw.overlay_url_networks, source),
    registry_logins: parseRegistryLogins(raw.registry_logins, source),
  };
}

/** overlay_url_networks: address ranges (CIDR or public, loopback, private, link-local); checked by building the policy. */
function parseNetworks(raw: unknown, source: string): string[] {
  if (raw === undefined || raw === null) return [...DEFAULT_OVERLAY_NETWORKS];
  if (!Array.isArray(raw) || raw.some((x) => typeof x !== 'string')) {
    throw new CloudletError('BadInput', `${source}: overlay_url_networks must be a list of address ranges (CIDR, or public, loopback, private, link-local)`);
  }
  new AddressPolicy(raw as string[], `${source}: overlay_url_networks`);
  return raw as string[];
}

/** registry_logins: {"host[:port]": [project ID (or name, embedded identity only), ...]}; a host as references name it (no scheme, no path). */
function parseRegistryLogins(raw: unknown, source: string): Record<string, string[]> {
  if (raw === undefined || raw === null) return {};
  const bad = (what: string) => new CloudletError('BadInput', `${source}: registry_logins${what}`);
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad(' must be a mapping of registry host[:port] to a list of projects');
  const out: Record<string, string[]> = {};
  for (const [host, projects] of Object.entries(raw as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) throw bad(`: ${host} is not a registry host[:port] (no scheme, no path)`);
    if (!Array.isArray(projects) || projects.some((p) => typeof p !== 'string' || !p)) throw bad(`.${host} must be a list of project names or IDs`);
    out[host.toLowerCase()] = projects as string[];
  }
  return out;
}

function parseIdentity(raw: unknown, source: string, dir: string): IdentityConfig {
  if (raw === undefined || raw === null) return { provider: 'embedded' };
  const bad = (what: string) => new CloudletError('BadInput', `${source}: identity.${what}`);
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('must be a mapping');
  const r = raw as Record<string, unknown>;
  const provider = r.provider ?? 'embedded';
  if (provider === 'embedded') {
    const extra = Object.keys(r).filter((k) => k !== 'provider');
    if (extra.length) throw bad(`${extra[0]} is only for provider keystone`);
    return { provider: 'embedded' };
  }
  if (provider !== 'keystone') throw bad(`provider must be embedded or keystone, not ${String(provider)}`);
  const known = new Set(['provider', 'auth_url', 'username', 'password', 'password_file', 'project', 'user_domain', 'project_domain',
    'cache_seconds', 'member_roles', 'admin_roles', 'register_region']);
  for (const k of Object.keys(r)) if (!known.has(k)) throw bad(`${k} is not a setting (known: ${[...known].join(', ')})`);
  const str = (k: string, dflt?: string): string => {
    const v = r[k] ?? dflt;
    if (typeof v !== 'string' || !v.trim()) throw bad(`${k} is needed (a non-empty string)`);
    return v;
  };
  const authUrl = str('auth_url');
  let u: URL;
  try { u = new URL(authUrl); } catch { throw bad(`auth_url is not a URL: ${authUrl}`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad('auth_url must be http(s)');
  let password: string;
  if (typeof r.password === 'string' && r.password_file === undefined) password = r.password;
  else if (typeof r.password_file === 'string' && r.password === undefined) {
    const f = path.resolve(dir, r.password_file);
    try { password = fs.readFileSync(f, 'utf8').replace(/\r?\n$/, ''); } catch (e) { throw bad(`password_file ${f}: ${(e as Error).message}`); }
  } else throw bad('needs exactly one of password and password_file');
  if (!password) throw bad('password is empty');
  const roles = (k: string, dflt: string[]): string[] => {
    const v = r[k] ?? dflt;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || !x)) throw bad(`${k} must be a list of role names`);
    return v as string[];
  };
  const cache = r.cache_seconds ?? 300;
  if (typeof cache !== 'number' || !Number.isFinite(cache) || cache < 0 || cache > 86400) throw bad('cache_seconds must be a number of seconds from 0 to 86400');
  if (r.register_region !== undefined && typeof r.register_region !== 'boolean') throw bad('register_region must be true or false');
  return {
    provider: 'keystone', auth_url: authUrl.replace(/\/+$/, ''), username: str('username'), password, project: str('project'),
    user_domain: str('user_domain', 'Default'), project_domain: str('project_domain', 'Default'), cache_seconds: cache,
    member_roles: roles('member_roles', ['member']), admin_roles: roles('admin_roles', ['admin']), register_region: r.register_region === true,
  };
}

export function loadConfig(file: string | undefined, dataDir: string): DaemonConfig {
  if (file) return parseConfig(fs.readFileSync(file, 'utf8'), file, path.dirname(path.resolve(file)));
  const pwFile = path.join(dataDir, 'admin.password');
  if (!fs.existsSync(pwFile)) {
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(pwFile, crypto.randomBytes(18).toString('base64url') + '\n', { mode: 0o600 });
  }
  const password = fs.readFileSync(pwFile, 'utf8').trim();
  return { ...DEFAULTS, projects: ['admin'], users: [{ name: 'admin', password, roles: { admin: ['admin', 'member'] } }], region: 'RegionOne', identity: { provider: 'embedded' } };
}
