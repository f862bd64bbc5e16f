/**
 * Background jobs persisted in SQLite, each with a live progress stream. A job's row is its truth:
 * RUNNING while its work runs, then DONE (with result) or ERROR (with message and fault: code and
 * hint). At start-up a row still RUNNING was cut by a crash and becomes ERROR ("interrupted"), so
 * nothing claims to be done.
 */
import * as crypto from 'crypto';
import { EventEmitter } from 'events';
import type BetterSqlite3 from 'better-sqlite3';
import type { EventBus, JobHandle, JobRegistry, JobStreamEvent } from './context';
import type { ProgressEvent } from '../common/progress';
import type { Logger } from '../common/log';
import { describeError, faultOf, type Fault } from '../common/errors';
import { hideHostPaths } from '../common/hostErrors';
export type { JobStreamEvent };

// The job row is exactly what the API returns: one type, shared with the client.
import type { Job as JobRecord, JobStatus } from '../client/types';
export type { JobRecord, JobStatus };

export function migrateJobs(db: BetterSqlite3.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, project_id TEXT NOT NULL, resource_id TEXT,
    status TEXT NOT NULL, phase TEXT, message TEXT, done REAL, total REAL, error TEXT, result TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`);
  const cols = (db.prepare('PRAGMA table_info(jobs)').all() as Array<{ name: string }>).map((c) => c.name);
  if (!cols.includes('fault')) db.exec('ALTER TABLE jobs ADD COLUMN fault TEXT');
}

const INTERRUPTED: Fault = { code: 'Internal', message: 'interrupted: the daemon stopped while this job ran' };

export class Jobs implements JobRegistry {
  private emitter = new EventEmitter();
  private running = new Map<string, { abort: AbortController; finished: Promise<void> }>();
  /** Progress is written to the DB at most this often per job (the stream gets every event). */
  private lastWrite = new Map<string, number>();

  constructor(private db: BetterSqlite3.Database, private events: EventBus, private log: Logger) {
    this.emitter.setMaxListeners(0);
  }

  /** Marks jobs cut by a previous crash. Returns them so modules can fix their resources. */
  recoverInterrupted(): JobRecord[] {
    const cut = this.db.prepare("SELECT * FROM jobs WHERE status = 'RUNNING'").all() as any[];
    const now = new Date().toISOString();
    this.db.prepare("UPDATE jobs SET status = 'ERROR', error = ?, fault = ?, updated_at = ? WHERE status = 'RUNNING'").run(INTERRUPTED.message, JSON.stringify(INTERRUPTED), now);
    return cut.map((r) => this.decode({ ...r, status: 'ERROR' }));
  }

  start(kind: string, projectId: string, resourceId: string | undefined, work: (job: JobHandle) => Promise<unknown>): string {
    const id = crypto.randomUUID();
    const now = new Date().toISOString();
    this.db.prepare("INSERT INTO jobs (id, kind, project_id, resource_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'RUNNING', ?, ?)")
      .run(id, kind, projectId, resourceId ?? null, now, now);
    const abort = new AbortController();
    const handle: JobHandle = {
      id, kind, resourceId, signal: abort.signal,
      progress: (e) => this.progress(id, { ...e, at: e.at ?? Date.now() }),
    };
    this.events.publish('jobs', { id, kind, resourceId, status: 'RUNNING', project_id: projectId });
    // setImmediate: the caller gets the id (and can answer its HTTP request) before work begins.
    const finished = new Promise<void>((resolve) => setImmediate(() => {
      Promise.resolve().then(() => work(handle)).then(
        (result) => this.finish(id, abort.signal.aborted ? 'CANCELLED' : 'DONE', undefined, result),
        (err) => this.finish(id, abort.signal.aborted ? 'CANCELLED' : 'ERROR', err),
      ).finally(resolve);
    }));
    this.running.set(id, { abort, finished });
    return id;
  }

  get(id: string): JobRecord | undefined {
    const r = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id);
    return r ? this.decode(r) : undefined;
  }

  list(projectId: string | undefined, limit = 100): JobRecord[] {
    const rows = projectId
      ? this.db.prepare('SELECT * FROM jobs WHERE project_id = ? ORDER BY created_at DESC LIMIT ?').all(projectId, limit)
      : this.db.prepare('SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?').all(limit);
    return rows.map((r) => this.decode(r));
  }

  cancel(id: string): boolean {
    const r = this.running.get(id);
    if (!r) return false;
    r.abort.abort();
    return true;
  }

  /** Resolves when the job has finished (at once if it is not running in this process). */
  async wait(id: string): Promise<JobRecord | undefined> {
    await this.running.get(id)?.finished;
    return this.get(id);
  }

  /** Subscribe to one job's stream; returns the unsubscribe function. */
  subscribe(id: string, fn: (e: JobStreamEvent) => void): () => void {
    this.emitter.on(id, fn);
    return () => this.emitter.off(id, fn);
  }

  isRunning(id: string): boolean { return this.running.has(id); }

  /** Cancels every running job and waits for them (daemon shutdown). */
  async stopAll(): Promise<void> {
    for (const r of this.running.values()) r.abort.abort();
    await Promise.all([...this.running.values()].map((r) => r.finished));
  }

  private progress(id: string, e: ProgressEvent): void {
    this.emitter.emit(id, { type: 'progress', job: id, event: e } satisfies JobStreamEvent);
    const now = Date.now();
    if (now - (this.lastWrite.get(id) ?? 0) < 250 && !e.message) return;
    this.lastWrite.set(id, now);
    this.db.prepare('UPDATE jobs SET phase = ?, message = ?, done = ?, total = ?, updated_at = ? WHERE id = ?')
      .run(e.phase, e.message ?? null, e.done ?? null, e.total ?? null, new Date(now).toISOString(), id);
  }

  private finish(id: string, status: JobStatus, err?: unknown, result?: unknown): void {
    // What the job's caller sees names no path of the daemon host (the log has them).
    const raw = err === undefined ? undefined : faultOf(err);
    const fault = raw && { ...raw, message: hideHostPaths(raw.message), ...(raw.hint ? { hint: hideHostPaths(raw.hint) } : {}) };
    const error = err === undefined ? undefined : hideHostPaths(describeError(err));
    this.running.delete(id);
    this.lastWrite.delete(id);
    let projectId: string | undefined;
    try {
      projectId = (this.db.prepare('SELECT project_id FROM jobs WHERE id = ?').get(id) as { project_id: string } | undefined)?.project_id;
      this.db.prepare('UPDATE jobs SET status = ?, error = ?, fault = ?, result = ?, updated_at = ? WHERE id = ?')
        .run(status, error ?? null, fault ? JSON.stringify(fault) : null, result === undefined ? null : JSON.stringify(result), new Date().toISOString(), id);
    } catch (e) {
      this.log.warn(`job ${id}: could not record its end: ${describeError(e)}`);  // DB closed at shutdown
    }
    if (error) this.log.warn(`job ${id} ${status}: ${error}`);
    this.emitter.emit(id, { type: 'end', job: id, status, error, fault, result } satisfies JobStreamEvent);
    this.events.publish('jobs', { id, status, project_id: projectId });
  }

  private decode(r: any): JobRecord {
    return { ...r, result: r.result ? JSON.parse(r.result) : null, fault: r.fault ? JSON.parse(r.fault) : null };
  }
}
