/**
 * What a source needs to ask a destination, after a restart, whether a handoff it was running when
 * it stopped moved the VM there: the destination's compute URL, the session id and the token the
 * caller gave for the destination. The daemon stores no secrets encrypted, so these live in a
 * private table (never in a server's API-visible metadata) only while the handoff runs; the row is
 * removed as soon as the handoff's outcome is known (or given up on).
 */
import type BetterSqlite3 from 'better-sqlite3';

export interface PendingHandoff { serverId: string; handoffUrl: string; destToken: string; sessionId: string | null; destFingerprint?: string }

export class PendingHandoffs {
  constructor(private readonly db: BetterSqlite3.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS handoff_pending (server_id TEXT PRIMARY KEY, handoff_url TEXT NOT NULL,
      dest_token TEXT NOT NULL, session_id TEXT, created_at TEXT NOT NULL)`);
    const cols = db.prepare('PRAGMA table_info(handoff_pending)').all() as { name: string }[];
    if (!cols.some((c) => c.name === 'dest_fingerprint')) db.exec('ALTER TABLE handoff_pending ADD COLUMN dest_fingerprint TEXT');
  }

  begin(serverId: string, handoffUrl: string, destToken: string, destFingerprint?: string): void {
    this.db.prepare('INSERT OR REPLACE INTO handoff_pending (server_id, handoff_url, dest_token, session_id, created_at, dest_fingerprint) VALUES (?, ?, ?, NULL, ?, ?)')
      .run(serverId, handoffUrl, destToken, new Date().toISOString(), destFingerprint ?? null);
  }

  session(serverId: string, sessionId: string): void {
    this.db.prepare('UPDATE handoff_pending SET session_id = ? WHERE server_id = ?').run(sessionId, serverId);
  }

  get(serverId: string): PendingHandoff | undefined {
    const r = this.db.prepare('SELECT * FROM handoff_pending WHERE server_id = ?').get(serverId) as
      { server_id: string; handoff_url: string; dest_token: string; session_id: string | null; dest_fingerprint: string | null } | undefined;
    return r ? { serverId: r.server_id, handoffUrl: r.handoff_url, destToken: r.dest_token, sessionId: r.session_id, destFingerprint: r.dest_fingerprint ?? undefined } : undefined;
  }

  clear(serverId: string): void {
    this.db.prepare('DELETE FROM handoff_pending WHERE server_id = ?').run(serverId);
  }
}
