/**
 * Fires lease events on time. The schedule lives in the database (device_lease_events), not in
 * memory: on start every event already due is handled at once (a lease that ended while the daemon
 * was down ends now), and one timer waits for the next due event. Events caught IN_PROGRESS by a
 * crash are retried (handlers are idempotent).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Logger } from '../common/log';
import type { EventRow } from './leaseStore';

export interface LeaseClockOptions {
  db: BetterSqlite3.Database;
  handle: (event: EventRow) => Promise<void>;
  log?: Logger;
  now?: () => number;
  /** Longest single sleep; the clock re-reads the schedule at least this often. */
  maxSleepMs?: number;
}

const ORDER = `ORDER BY time, CASE event_type WHEN 'start_lease' THEN 0 WHEN 'before_end_lease' THEN 1 ELSE 2 END`;

export class LeaseClock {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private readonly now: () => number;
  private readonly maxSleep: number;

  constructor(private readonly o: LeaseClockOptions) {
    this.now = o.now ?? Date.now;
    this.maxSleep = o.maxSleepMs ?? 60_000;
  }

  /** Recovers from a crash, handles everything due, then keeps time. */
  async start(): Promise<void> {
    this.stopped = false;
    this.o.db.prepare(`UPDATE device_lease_events SET status = 'UNDONE' WHERE status = 'IN_PROGRESS'`).run();
    await this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** The schedule changed (a lease was created, moved or deleted): look again now. */
  poke(): void {
    if (!this.stopped) void this.tick();
  }

  /** Handles due events one by one; a tick asked for while one runs is run right after it. */
  tick(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.handleDue();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
        this.arm();
      }
    })();
    return this.running;
  }

  private async handleDue(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const e = this.o.db.prepare(`SELECT * FROM device_lease_events WHERE status = 'UNDONE' AND time <= ? ${ORDER} LIMIT 1`)
        .get(this.now()) as EventRow | undefined;
      if (!e) return;
      this.setStatus(e.id, 'IN_PROGRESS');
      try {
        await this.o.handle(e);
        this.setStatus(e.id, 'DONE');
      } catch (err) {
        this.o.log?.error(`lease ${e.lease_id}: ${e.event_type} failed: ${err instanceof Error ? err.message : String(err)}`);
        this.setStatus(e.id, 'ERROR');
      }
    }
  }

  private setStatus(id: string, status: string): void {
    this.o.db.prepare('UPDATE device_lease_events SET status = ?, updated_at = ? WHERE id = ?').run(status, this.now(), id);
  }

  /** One timer for the next undone event (capped, so clock jumps and long waits stay safe). */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    const next = this.o.db.prepare(`SELECT MIN(time) AS t FROM device_lease_events WHERE status = 'UNDONE'`).get() as { t: number | null };
    if (next.t === null) return;
    const wait = Math.min(Math.max(next.t - this.now(), 0), this.maxSleep);
    this.timer = setTimeout(() => void this.tick(), wait);
    this.timer.unref?.();
  }
}
