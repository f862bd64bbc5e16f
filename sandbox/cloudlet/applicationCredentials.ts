/**
 * Keystone application credentials of the embedded identity: a user's named secret bound to one
 * project, optionally limited to some of the user's roles there, optionally expiring. The secret
 * is shown once, at creation, and stored scrypt-hashed like a password. Tokens made from a
 * credential carry its id (identityStore.ts), so deleting it ends them.
 */
import * as crypto from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { hashPassword } from './passwords';
import { CloudletError } from '../common/errors';

export function migrateApplicationCredentials(db: BetterSqlite3.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS application_credentials (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, project_id TEXT NOT NULL,
      name TEXT NOT NULL, description TEXT, secret_hash TEXT NOT NULL, roles TEXT NOT NULL, unrestricted INTEGER NOT NULL DEFAULT 0,
      expires_at TEXT, created_at TEXT NOT NULL, UNIQUE (user_id, name));
  `);
}

export interface ApplicationCredential {
  id: string;
  userId: string;
  projectId: string;
  name: string;
  description: string | null;
  /** The roles its tokens may carry (at most the user's roles on the project, checked at each login). */
  roles: string[];
  unrestricted: boolean;
  expiresAt: string | null;
}

/** Stored for verification only. */
export interface StoredApplicationCredential extends ApplicationCredential { secretHash: string }

type Row = { id: string; user_id: string; project_id: string; name: string; description: string | null; secret_hash: string; roles: string; unrestricted: number; expires_at: string | null };

const fromRow = (r: Row): StoredApplicationCredential => ({
  id: r.id, userId: r.user_id, projectId: r.project_id, name: r.name, description: r.description, secretHash: r.secret_hash,
  roles: JSON.parse(r.roles) as string[], unrestricted: !!r.unrestricted, expiresAt: r.expires_at,
});

const publicView = ({ secretHash: _omit, ...c }: StoredApplicationCredential): ApplicationCredential => c;

export interface NewApplicationCredential {
  name: string;
  description?: string | null;
  secret?: string | null;
  roles: string[];
  unrestricted: boolean;
  expiresAt: string | null;
}

export class ApplicationCredentials {
  constructor(private db: BetterSqlite3.Database) { migrateApplicationCredentials(db); }

  /** Creates one for `userId` on `projectId`; returns it with its secret (never available again). */
  create(userId: string, projectId: string, c: NewApplicationCredential): ApplicationCredential & { secret: string } {
    if (this.db.prepare('SELECT 1 FROM application_credentials WHERE user_id = ? AND name = ?').get(userId, c.name)) {
      throw new CloudletError('Conflict', `Conflict occurred attempting to store application_credential - an application credential named ${JSON.stringify(c.name)} already exists for this user.`);
    }
    const secret = c.secret ?? crypto.randomBytes(48).toString('base64url');
    const id = crypto.randomUUID().replace(/-/g, '');
    this.db.prepare('INSERT INTO application_credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(id, userId, projectId, c.name, c.description ?? null, hashPassword(secret), JSON.stringify(c.roles), c.unrestricted ? 1 : 0, c.expiresAt, new Date().toISOString());
    return { ...publicView(this.stored(id)!), secret };
  }

  list(userId: string, name?: string): ApplicationCredential[] {
    const rows = (name === undefined
      ? this.db.prepare('SELECT * FROM application_credentials WHERE user_id = ? ORDER BY name').all(userId)
      : this.db.prepare('SELECT * FROM application_credentials WHERE user_id = ? AND name = ?').all(userId, name)) as Row[];
    return rows.map((r) => publicView(fromRow(r)));
  }

  get(userId: string, id: string): ApplicationCredential {
    const c = this.stored(id);
    if (!c || c.userId !== userId) throw new CloudletError('NotFound', `Could not find application credential: ${id}.`);
    return publicView(c);
  }

  /** For a login: by id, or by name within a user's credentials. */
  stored(id: string): StoredApplicationCredential | undefined {
    const r = this.db.prepare('SELECT * FROM application_credentials WHERE id = ?').get(id) as Row | undefined;
    return r && fromRow(r);
  }

  storedByName(userId: string, name: string): StoredApplicationCredential | undefined {
    const r = this.db.prepare('SELECT * FROM application_credentials WHERE user_id = ? AND name = ?').get(userId, name) as Row | undefined;
    return r && fromRow(r);
  }

  /** Deletes one (the caller revokes its tokens). */
  delete(userId: string, id: string): void {
    this.get(userId, id);
    this.db.prepare('DELETE FROM application_credentials WHERE id = ?').run(id);
  }
}
