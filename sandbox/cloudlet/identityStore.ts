/**
 * Users, projects, role assignments and tokens in SQLite. Config is the source of truth for who
 * exists; it is synced in at start (stable ids kept by name). Tokens are stored as SHA-256 of the
 * token only, with their expiry, so validity rules survive a restart and a leaked DB gives no token.
 * Password logins are throttled per user name and source address (loginThrottle.ts), hashed off
 * the event loop, and cost one scrypt whether or not the user exists (no timing oracle).
 */
import * as crypto from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuthContext } from './context';
import type { DaemonConfig } from './config';
import { hashPassword, isPasswordHash, passwordHasher, verifyPasswordSync } from './passwords';
import { LoginThrottle, type LoginLimits } from './loginThrottle';
import { ApplicationCredentials, migrateApplicationCredentials } from './applicationCredentials';
import { CloudletError } from '../common/errors';

export function migrateIdentity(db: BetterSqlite3.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL);
    CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE IF NOT EXISTS role_assignments (user_id TEXT NOT NULL, project_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, project_id, role));
    CREATE TABLE IF NOT EXISTS tokens (token_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL, project_id TEXT NOT NULL,
      issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, audit_id TEXT NOT NULL);
  `);
  // How each token was obtained (Keystone's token "methods") and the application credential behind it.
  const cols = (db.prepare('PRAGMA table_info(tokens)').all() as { name: string }[]).map((c) => c.name);
  if (!cols.includes('methods')) db.exec(`ALTER TABLE tokens ADD COLUMN methods TEXT NOT NULL DEFAULT '["password"]'`);
  if (!cols.includes('app_cred_id')) db.exec('ALTER TABLE tokens ADD COLUMN app_cred_id TEXT');
  migrateApplicationCredentials(db);
}

const newId = () => crypto.randomUUID().replace(/-/g, '');
const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

export interface IssuedToken extends AuthContext {
  issuedAt: string;
  auditId: string;
  /** Keystone's token methods: how it was obtained ('password', 'token', 'application_credential'). */
  methods: string[];
  /** The application credential it was made from, if any. */
  applicationCredential?: { id: string; name: string; restricted: boolean };
}

/** A login refused by the throttle: 429 with Retry-After `retryAfter` seconds. */
export class LoginThrottledError extends CloudletError {
  constructor(readonly retryAfter: number) {
    super('Throttled', 'Too many failed logins for this user or from this address.', { hint: `try again in ${retryAfter} s` });
  }
}

export class IdentityStore {
  private readonly throttle: LoginThrottle;
  /** What an unknown or disabled user's password is checked against: the same work as a real one. */
  private readonly decoyHash = hashPassword(crypto.randomBytes(16).toString('base64'));
  readonly applicationCredentials: ApplicationCredentials;

  constructor(private db: BetterSqlite3.Database, private ttlSeconds: number, opts: { loginLimits?: LoginLimits } = {}) {
    this.throttle = new LoginThrottle(opts.loginLimits);
    this.applicationCredentials = new ApplicationCredentials(db);
  }

  /** Brings users/projects/roles in line with the config; keeps ids of names seen before. */
  sync(config: DaemonConfig): void {
    const tx = this.db.transaction(() => {
      for (const name of config.projects) {
        this.db.prepare('INSERT OR IGNORE INTO projects (id, name) VALUES (?, ?)').run(newId(), name);
      }
      const seen = new Set<string>();
      for (const u of config.users) {
        seen.add(u.name);
        const row = this.db.prepare('SELECT id, password_hash FROM users WHERE name = ?').get(u.name) as { id: string; password_hash: string } | undefined;
        let hash: string;
        if (u.password_hash) {
          if (!isPasswordHash(u.password_hash)) throw new CloudletError('BadInput', `user ${u.name}: password_hash is not a scrypt hash`);
          hash = u.password_hash;
        } else {
          // Keep the stored hash when the plaintext still matches: no needless re-hash each start.
          hash = row && verifyPasswordSync(u.password!, row.password_hash) ? row.password_hash : hashPassword(u.password!);
        }
        const id = row?.id ?? newId();
        this.db.prepare('INSERT INTO users (id, name, password_hash, enabled) VALUES (?, ?, ?, 1) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, enabled = 1').run(id, u.name, hash);
        this.db.prepare('DELETE FROM role_assignments WHERE user_id = ?').run(id);
        for (const [project, roles] of Object.entries(u.roles)) {
          const pid = this.projectId(project)!;
          for (const r of roles) this.db.prepare('INSERT OR IGNORE INTO role_assignments VALUES (?, ?, ?)').run(id, pid, r);
        }
      }
      // Users removed from the config are disabled (their tokens stop working), not deleted.
      for (const r of this.db.prepare('SELECT name FROM users').all() as { name: string }[]) {
        if (!seen.has(r.name)) this.db.prepare('UPDATE users SET enabled = 0 WHERE name = ?').run(r.name);
      }
      this.db.prepare('DELETE FROM tokens WHERE expires_at < ?').run(new Date().toISOString());
    });
    tx();
  }

  projectId(name: string): string | undefined {
    return (this.db.prepare('SELECT id FROM projects WHERE name = ?').get(name) as { id: string } | undefined)?.id;
  }

  projects(): { id: string; name: string }[] {
    return this.db.prepare('SELECT id, name FROM projects ORDER BY name').all() as { id: string; name: string }[];
  }

  /**
   * Password auth scoped to a project (by name or id), from source address `source`. Throws 401 for
   * any mismatch without saying which, LoginThrottledError (429) past the failure limits.
   */
  async issue(userName: string, password: string, project: { name?: string; id?: string } | undefined, source: string): Promise<IssuedToken> {
    const unauthorized = () => new CloudletError('Unauthorized', 'The request you have made requires authentication.');
    const wait = this.throttle.retryAfter(userName, source);
    if (wait) throw new LoginThrottledError(wait);
    const user = this.db.prepare('SELECT id, name, password_hash, enabled FROM users WHERE name = ?').get(userName) as
      { id: string; name: string; password_hash: string; enabled: number } | undefined;
    const known = !!user && !!user.enabled;
    // Always one scrypt: an unknown name takes as long as a wrong password.
    const ok = await passwordHasher.verify(password, known ? user.password_hash : this.decoyHash);
    if (!known || !ok) {
      this.throttle.failed(userName, source);
      throw unauthorized();
    }
    this.throttle.succeeded(userName);
    let proj: { id: string; name: string } | undefined;
    if (project?.id) proj = this.db.prepare('SELECT id, name FROM projects WHERE id = ?').get(project.id) as any;
    else if (project?.name) proj = this.db.prepare('SELECT id, name FROM projects WHERE name = ?').get(project.name) as any;
    else {
      // Unscoped request: scope to the user's first project (we have no unscoped tokens).
      proj = this.db.prepare('SELECT p.id, p.name FROM projects p JOIN role_assignments r ON r.project_id = p.id WHERE r.user_id = ? ORDER BY p.name LIMIT 1').get(user.id) as any;
    }
    if (!proj || !this.roles(user.id, proj.id).length) throw unauthorized();
    return this.mint(user.id, proj.id, ['password']);
  }

  /**
   * The `token` method: a new token of the same user for `project` (Keystone's re-scoping), expiring
   * when the presented one does. A token made from an application credential stays on its project.
   */
  issueFromToken(presented: string, project: { name?: string; id?: string } | undefined): IssuedToken {
    const t = this.validate(presented);
    if (!t) throw new CloudletError('Unauthorized', 'The request you have made requires authentication: the token to re-scope is not valid.');
    const target = project?.id ? this.projectRow('id', project.id) : project?.name ? this.projectRow('name', project.name) : { id: t.projectId, name: t.projectName };
    if (t.applicationCredential && target?.id !== t.projectId) {
      throw new CloudletError('Forbidden', 'a token made from an application credential cannot be re-scoped to another project');
    }
    if (!target || !this.roles(t.userId, target.id).length) {
      throw new CloudletError('Unauthorized', `User ${t.userId} has no access to project ${project?.id ?? project?.name}.`);
    }
    return this.mint(t.userId, target.id, ['token', ...t.methods.filter((m) => m !== 'token')], { expiresAt: t.expiresAt, appCredId: t.applicationCredential?.id });
  }

  /**
   * The `application_credential` method: by id, or by name with its user (name or id), and the
   * secret. Throttled like passwords (per credential and source address), one scrypt either way.
   */
  async issueFromApplicationCredential(ref: { id?: string; name?: string; user?: { id?: string; name?: string } }, secret: string, source: string): Promise<IssuedToken> {
    const unauthorized = () => new CloudletError('Unauthorized', 'The request you have made requires authentication.');
    const userId = ref.user?.id ?? (ref.user?.name ? (this.db.prepare('SELECT id FROM users WHERE name = ?').get(ref.user.name) as { id: string } | undefined)?.id : undefined);
    const key = `application_credential:${ref.id ?? `${userId ?? ref.user?.name}/${ref.name}`}`;
    const wait = this.throttle.retryAfter(key, source);
    if (wait) throw new LoginThrottledError(wait);
    const c = ref.id ? this.applicationCredentials.stored(ref.id) : userId && ref.name ? this.applicationCredentials.storedByName(userId, ref.name) : undefined;
    const ok = await passwordHasher.verify(secret, c?.secretHash ?? this.decoyHash);
    const user = c && this.db.prepare('SELECT id FROM users WHERE id = ? AND enabled = 1').get(c.userId);
    const live = !!c && (!c.expiresAt || Date.parse(c.expiresAt) > Date.now());
    if (!c || !ok || !user || !live || !this.limitedRoles(c.userId, c.projectId, c.roles).length) {
      this.throttle.failed(key, source);
      throw unauthorized();
    }
    this.throttle.succeeded(key);
    const expiresAt = c.expiresAt && Date.parse(c.expiresAt) < Date.now() + this.ttlSeconds * 1000 ? c.expiresAt : undefined;
    return this.mint(c.userId, c.projectId, ['application_credential'], { appCredId: c.id, expiresAt });
  }

  /** Deletes an application credential of `userId` and every token made from it. */
  deleteApplicationCredential(userId: string, id: string): void {
    const tx = this.db.transaction(() => {
      this.applicationCredentials.delete(userId, id);
      this.db.prepare('DELETE FROM tokens WHERE app_cred_id = ?').run(id);
    });
    tx();
  }

  /** The projects a user holds a role on (Keystone's /v3/users/{id}/projects). */
  projectsOf(userId: string): { id: string; name: string }[] {
    return this.db.prepare('SELECT DISTINCT p.id, p.name FROM projects p JOIN role_assignments r ON r.project_id = p.id WHERE r.user_id = ? ORDER BY p.name').all(userId) as { id: string; name: string }[];
  }

  private projectRow(by: 'id' | 'name', v: string): { id: string; name: string } | undefined {
    return this.db.prepare(`SELECT id, name FROM projects WHERE ${by} = ?`).get(v) as { id: string; name: string } | undefined;
  }

  private mint(userId: string, projectId: string, methods: string[], o: { expiresAt?: string; appCredId?: string } = {}): IssuedToken {
    const token = 'gAAAA' + crypto.randomBytes(32).toString('base64url');
    const now = new Date();
    const issuedAt = now.toISOString();
    const expiresAt = o.expiresAt ?? new Date(now.getTime() + this.ttlSeconds * 1000).toISOString();
    const auditId = crypto.randomBytes(16).toString('base64url').slice(0, 22);
    this.db.prepare('INSERT INTO tokens (token_sha256, user_id, project_id, issued_at, expires_at, audit_id, methods, app_cred_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(sha256(token), userId, projectId, issuedAt, expiresAt, auditId, JSON.stringify(methods), o.appCredId ?? null);
    const t = this.validate(token);
    if (!t) throw new CloudletError('Unauthorized', 'The request you have made requires authentication.');
    return t;
  }

  /** The caller of a token, or undefined when unknown, expired, revoked or its user disabled. */
  validate(token: string | undefined): IssuedToken | undefined {
    if (!token) return undefined;
    const row = this.db.prepare(`SELECT t.user_id, u.name AS user_name, t.project_id, p.name AS project_name, t.issued_at, t.expires_at, t.audit_id, t.methods, t.app_cred_id
      FROM tokens t JOIN users u ON u.id = t.user_id JOIN projects p ON p.id = t.project_id
      WHERE t.token_sha256 = ? AND u.enabled = 1`).get(sha256(token)) as any;
    if (!row || Date.parse(row.expires_at) <= Date.now()) return undefined;
    const cred = row.app_cred_id ? this.applicationCredentials.stored(row.app_cred_id) : undefined;
    if (row.app_cred_id && !cred) return undefined;
    const ctx = this.context(row.user_id, row.user_name, row.project_id, row.project_name, row.expires_at, token, cred?.roles);
    if (!ctx.roles.length) return undefined;
    return {
      ...ctx, issuedAt: row.issued_at, auditId: row.audit_id, methods: JSON.parse(row.methods) as string[],
      ...(cred ? { applicationCredential: { id: cred.id, name: cred.name, restricted: !cred.unrestricted } } : {}),
    };
  }

  /** Keystone's rule for X-Subject-Token: the token's own user, or an admin or service role. */
  maySee(caller: AuthContext, subject: AuthContext): boolean {
    return caller.userId === subject.userId || caller.isAdmin || caller.roles.includes('service');
  }

  revoke(token: string): void {
    this.db.prepare('DELETE FROM tokens WHERE token_sha256 = ?').run(sha256(token));
  }

  private roles(userId: string, projectId: string): string[] {
    return (this.db.prepare('SELECT role FROM role_assignments WHERE user_id = ? AND project_id = ? ORDER BY role').all(userId, projectId) as { role: string }[]).map((r) => r.role);
  }

  /** The user's roles on a project, cut to `limit` (an application credential's roles) when given. */
  private limitedRoles(userId: string, projectId: string, limit?: string[]): string[] {
    const roles = this.roles(userId, projectId);
    return limit ? roles.filter((r) => limit.includes(r)) : roles;
  }

  private context(userId: string, userName: string, projectId: string, projectName: string, expiresAt: string, token: string, limit?: string[]): AuthContext {
    const roles = this.limitedRoles(userId, projectId, limit);
    return { userId, userName, projectId, projectName, roles, isAdmin: roles.includes('admin'), expiresAt, token };
  }
}
