/**
 * The lease state machine: PENDING -> (STARTING) -> ACTIVE -> (TERMINATING) -> TERMINATED,
 * driven by the clock's start_lease / before_end_lease / end_lease events. Ending a lease stops
 * and removes its containers (through the reaper) and releases its devices. Every step is
 * idempotent, because after a crash the clock hands the same event over again.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Logger } from '../common/log';
import type { EventRow, LeaseRow } from './leaseStore';

export interface ContainerReaper {
  /** Stops and removes every container of the lease; never throws for an unreachable engine
   *  (those containers are left marked for removal and swept when the engine is back). */
  removeLeaseContainers(leaseId: string): Promise<void>;
}

export type LeasePublisher = (data: Record<string, unknown>) => void;

export class LeaseLifecycle {
  constructor(
    private readonly db: BetterSqlite3.Database,
    private readonly reaper: ContainerReaper,
    private readonly publish: LeasePublisher = () => {},
    private readonly now: () => number = Date.now,
    private readonly log?: Logger,
  ) {}

  private lease(id: string): LeaseRow | undefined {
    return this.db.prepare('SELECT * FROM device_leases WHERE id = ?').get(id) as LeaseRow | undefined;
  }

  private setStatus(id: string, status: string, reservationStatus?: string): void {
    const t = this.now();
    this.db.transaction(() => {
      this.db.prepare('UPDATE device_leases SET status = ?, updated_at = ? WHERE id = ?').run(status, t, id);
      if (reservationStatus) {
        this.db.prepare('UPDATE device_reservations SET status = ?, updated_at = ? WHERE lease_id = ?').run(reservationStatus, t, id);
      }
    })();
    this.publish({ id, status });
  }

  async handle(e: EventRow): Promise<void> {
    const l = this.lease(e.lease_id);
    if (!l) return;
    switch (e.event_type) {
      case 'start_lease':
        if (l.status !== 'PENDING' && l.status !== 'STARTING') return;
        this.setStatus(l.id, 'STARTING');
        this.setStatus(l.id, 'ACTIVE', 'active');
        this.log?.info(`lease ${l.name} (${l.id}) is active`);
        return;
      case 'before_end_lease':
        if (l.status === 'ACTIVE') this.publish({ id: l.id, status: l.status, event: 'before_end_lease' });
        return;
      case 'end_lease':
        await this.end(l.id);
        return;
    }
  }

  /** Ends the lease now: containers removed, devices released, status TERMINATED. */
  async end(leaseId: string): Promise<void> {
    const l = this.lease(leaseId);
    if (!l || l.status === 'TERMINATED') return;
    this.setStatus(l.id, 'TERMINATING');
    await this.reaper.removeLeaseContainers(l.id);
    const t = this.now();
    this.db.transaction(() => {
      this.db.prepare(`UPDATE device_allocations SET active = 0 WHERE reservation_id IN (SELECT id FROM device_reservations WHERE lease_id = ?)`).run(l.id);
      this.db.prepare(`UPDATE device_lease_events SET status = 'DONE', updated_at = ? WHERE lease_id = ? AND status = 'UNDONE'`).run(t, l.id);
    })();
    this.setStatus(l.id, 'TERMINATED', 'deleted');
    this.log?.info(`lease ${l.name} (${l.id}) ended`);
  }

  /** DELETE /v1/leases/{id}: end it if it runs, then forget it. */
  async delete(leaseId: string): Promise<void> {
    const l = this.lease(leaseId);
    if (!l) return;
    if (l.status !== 'TERMINATED') await this.end(leaseId);
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM device_lease_events WHERE lease_id = ?').run(leaseId);
      this.db.prepare('DELETE FROM device_allocations WHERE reservation_id IN (SELECT id FROM device_reservations WHERE lease_id = ?)').run(leaseId);
      this.db.prepare('DELETE FROM device_reservations WHERE lease_id = ?').run(leaseId);
      this.db.prepare('DELETE FROM device_leases WHERE id = ?').run(leaseId);
    })();
    this.publish({ id: leaseId, status: 'DELETED' });
  }
}
