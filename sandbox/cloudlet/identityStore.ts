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
import { CloudletError } from '../common/errors';

export function migrateIdentity(db: BetterSqlite3.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL);
    CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE IF NOT EXISTS role_assignments (user_id TEXT NOT NULL, project_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, project_id, role));
    CREATE TABLE IF NOT EXISTS tokens (token_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL, project_id TEXT NOT NULL,
      issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, audit_id TEXT NOT NULL);
  `);
}

const newId = () => crypto.randomUUID().replace(/-/g, '');
const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

export interface IssuedToken extends AuthContext { issuedAt: string; auditId: string }

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

  constructor(private db: BetterSqlite3.Database, private ttlSeconds: number, opts: { loginLimits?: LoginLimits } = {}) {
    this.throttle = new LoginThrottle(opts.loginLimits);
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
    const token = 'gAAAA' + crypto.randomBytes(32).toString('base64url');
    const now = new Date();
    const issuedAt = now.toISOString();
    const expiresAt = new Date(now.getTime() + this.ttlSeconds * 1000).toISOString();
    const auditId = crypto.randomBytes(16).toString('base64url').slice(0, 22);
    this.db.prepare('INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)').run(sha256(token), user.id, proj.id, issuedAt, expiresAt, auditId);
    return { ...this.context(user.id, user.name, proj.id, proj.name, expiresAt, token), issuedAt, auditId };
  }

  /** The caller of a token, or undefined when unknown, expired, revoked or its user disabled. */
  validate(token: string | undefined): IssuedToken | undefined {
    if (!token) return undefined;
    const row = this.db.prepare(`SELECT t.user_id, u.name AS user_name, t.project_id, p.name AS project_name, t.issued_at, t.expires_at, t.audit_id
      FROM tokens t JOIN users u ON u.id = t.user_id JOIN projects p ON p.id = t.project_id
      WHERE t.token_sha256 = ? AND u.enabled = 1`).get(sha256(token)) as any;
    if (!row || Date.parse(row.expires_at) <= Date.now()) return undefined;
    const ctx = this.context(row.user_id, row.user_name, row.project_id, row.project_name, row.expires_at, token);
    if (!ctx.roles.length) return undefined;
    return { ...ctx, issuedAt: row.issued_at, auditId: row.audit_id };
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

  private context(userId: string, userName: string, projectId: string, projectName: string, expiresAt: string, token: string): AuthContext {
    const roles = this.roles(userId, projectId);
    return { userId, userName, projectId, projectName, roles, isAdmin: roles.includes('admin'), expiresAt, token };
  }
}
