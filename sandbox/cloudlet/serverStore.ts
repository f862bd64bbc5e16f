/** Nova servers in SQLite: what each server is, its state, its VM and the job working on it. */
import * as crypto from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuthContext } from './context';
import { CloudletError, faultOf } from '../common/errors';
import { hideHostPaths } from '../common/hostErrors';
import type { ServerFault, ServerStatus } from '../client/types';

export type { ServerFault, ServerStatus };

/** The fault of what made a server fail: an error (its status, code and hint) or a sentence (Internal, 500); no host path shown. */
export function serverFault(e: unknown, status?: number): ServerFault {
  const raw = typeof e === 'string' ? faultOf(new CloudletError('Internal', e)) : faultOf(e);
  const f = { ...raw, message: hideHostPaths(raw.message), ...(raw.hint ? { hint: hideHostPaths(raw.hint) } : {}) };
  const code = status ?? (e instanceof CloudletError ? e.status : 500);
  return { code: code === 499 ? 409 : code, message: f.hint ? `${f.message}\n  hint: ${f.hint}` : f.message, created: new Date().toISOString(),
    cloudlet_error: { code: f.code, ...(f.hint ? { hint: f.hint } : {}) } };
}

export interface ServerRow {
  id: string;
  name: string;
  project_id: string;
  user_id: string;
  status: ServerStatus;
  task_state: string | null;
  image_id: string;
  flavor_id: string;
  base_id: string | null;
  vm_id: string | null;
  metadata: Record<string, string>;
  ports: Record<string, string>;
  job_id: string | null;
  fault: ServerFault | null;
  progress: number;
  created_at: string;
  updated_at: string;
  launched_at: string | null;
}

export function migrateServers(db: BetterSqlite3.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS servers (id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, user_id TEXT NOT NULL,
    status TEXT NOT NULL, task_state TEXT, image_id TEXT NOT NULL DEFAULT '', flavor_id TEXT NOT NULL, base_id TEXT, vm_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}', ports TEXT NOT NULL DEFAULT '{}', job_id TEXT, fault TEXT, progress INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, launched_at TEXT)`);
}

const JSON_COLS = ['metadata', 'ports', 'fault'] as const;

export class ServerStore {
  constructor(private db: BetterSqlite3.Database) {}

  insert(r: Omit<ServerRow, 'id' | 'created_at' | 'updated_at' | 'fault' | 'progress' | 'launched_at' | 'job_id' | 'vm_id' | 'task_state'> & { task_state?: string | null }): ServerRow {
    const id = crypto.randomUUID();
    const t = new Date().toISOString();
    this.db.prepare(`INSERT INTO servers (id, name, project_id, user_id, status, task_state, image_id, flavor_id, base_id, metadata, ports, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(id, r.name, r.project_id, r.user_id, r.status, r.task_state ?? null, r.image_id, r.flavor_id,
      r.base_id, JSON.stringify(r.metadata), JSON.stringify(r.ports), t, t);
    return this.getRow(id)!;
  }

  getRow(id: string): ServerRow | undefined {
    const r = this.db.prepare("SELECT * FROM servers WHERE id = ? AND status != 'DELETED'").get(id) as any;
    return r ? decode(r) : undefined;
  }

  /** A server of the caller's project (admins: any), else 404: others' servers do not exist for them. */
  get(a: AuthContext, id: string): ServerRow {
    const r = this.getRow(id);
    if (!r || (r.project_id !== a.projectId && !a.isAdmin)) throw new CloudletError('NotFound', `Instance ${id} could not be found.`);
    return r;
  }

  list(projectId?: string): ServerRow[] {
    const rows = projectId
      ? this.db.prepare("SELECT * FROM servers WHERE project_id = ? AND status != 'DELETED' ORDER BY created_at DESC").all(projectId)
      : this.db.prepare("SELECT * FROM servers WHERE status != 'DELETED' ORDER BY created_at DESC").all();
    return rows.map(decode);
  }

  /** Servers that hold a VM (count against capacity). */
  countLive(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM servers WHERE status IN ('BUILD', 'ACTIVE', 'PAUSED')").get() as { n: number }).n;
  }

  /** The server (not DELETED or ERROR) whose VM is `vmId`, if any. */
  ownerOfVm(vmId: string): string | undefined {
    return (this.db.prepare("SELECT id FROM servers WHERE vm_id = ? AND status NOT IN ('DELETED', 'ERROR')").get(vmId) as { id: string } | undefined)?.id;
  }

  update(id: string, fields: Partial<Omit<ServerRow, 'id'>>): ServerRow {
    const sets: string[] = [];
    const vals: unknown[] = [];
    for (const [k, v] of Object.entries(fields)) {
      sets.push(`${k} = ?`);
      vals.push((JSON_COLS as readonly string[]).includes(k) ? (v === null ? null : JSON.stringify(v)) : v);
    }
    sets.push('updated_at = ?');
    vals.push(new Date().toISOString(), id);
    this.db.prepare(`UPDATE servers SET ${sets.join(', ')} WHERE id = ?`).run(...vals);
    return this.db.prepare('SELECT * FROM servers WHERE id = ?').get(id) ? decode(this.db.prepare('SELECT * FROM servers WHERE id = ?').get(id)) : (undefined as never);
  }

  /** ERROR, with the fault of `e` (an error, or a sentence saying what happened). */
  fail(id: string, e: unknown): ServerRow {
    return this.update(id, { status: 'ERROR', task_state: null, fault: serverFault(e) });
  }
}

function decode(r: any): ServerRow {
  return { ...r, metadata: JSON.parse(r.metadata), ports: JSON.parse(r.ports), fault: r.fault ? JSON.parse(r.fault) : null };
}
