/**
 * The daemon's config file (YAML): users, projects, roles, token lifetime, capacity.
 *
 *   token_ttl_seconds: 3600
 *   max_servers: 8                  # capacity: more running VMs than this -> 503 / ERROR
 *   overlay_max_bytes: 4294967296   # size cap of an overlay fetched from overlay_url
 *   projects: [demo, other]
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
 */
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import * as YAML from 'yaml';
import { CloudletError } from '../common/errors';

export interface UserConfig {
  name: string;
  password?: string;
  password_hash?: string;
  /** project name -> role names */
  roles: Record<string, string[]>;
}

export interface DaemonConfig {
  token_ttl_seconds: number;
  max_servers: number;
  overlay_max_bytes: number;
  projects: string[];
  users: UserConfig[];
}

export const DEFAULTS = { token_ttl_seconds: 3600, max_servers: 8, overlay_max_bytes: 8 * 1024 ** 3 };

export function parseConfig(text: string, source = 'config'): DaemonConfig {
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
  return {
    token_ttl_seconds: num('token_ttl_seconds'), max_servers: num('max_servers'), overlay_max_bytes: num('overlay_max_bytes'),
    projects: [...projects], users,
  };
}

export function loadConfig(file: string | undefined, dataDir: string): DaemonConfig {
  if (file) return parseConfig(fs.readFileSync(file, 'utf8'), file);
  const pwFile = path.join(dataDir, 'admin.password');
  if (!fs.existsSync(pwFile)) {
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(pwFile, crypto.randomBytes(18).toString('base64url') + '\n', { mode: 0o600 });
  }
  const password = fs.readFileSync(pwFile, 'utf8').trim();
  return { ...DEFAULTS, projects: ['admin'], users: [{ name: 'admin', password, roles: { admin: ['admin', 'member'] } }] };
}
