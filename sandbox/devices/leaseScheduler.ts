/**
 * Decides which devices a lease gets and guarantees that no device is ever held by two
 * reservations whose windows overlap. The free-check and the inserts happen in one
 * `BEGIN IMMEDIATE` transaction, so two requests (even from two processes on one database)
 * cannot both see a device free and both take it.
 */
import { randomUUID } from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { CloudletError } from '../common/errors';
import { DeviceInventory, deviceAttributes, usableBy, type Device } from './deviceInventory';
import { matchesFilter } from './resourceFilter';
import { formatApiDate } from './leaseDates';
import type { LeaseCreateRequest, LeaseUpdateRequest } from './leaseRequest';
import type { LeaseRow } from './leaseStore';

export interface SchedulerOptions {
  /** Devices whose engine is known to be down are not handed out. */
  isDown?: (deviceId: string) => boolean;
  now?: () => number;
}

export class LeaseScheduler {
  private readonly isDown: (id: string) => boolean;
  private readonly now: () => number;

  constructor(private readonly db: BetterSqlite3.Database, private readonly inventory: DeviceInventory, opts: SchedulerOptions = {}) {
    this.isDown = opts.isDown ?? (() => false);
    this.now = opts.now ?? Date.now;
  }

  /** Devices held by another live reservation somewhere in [start, end). */
  private busyDevices(start: number, end: number, exceptLeaseId?: string): Map<string, number> {
    const rows = this.db.prepare(`SELECT a.device_id, MAX(a.end_at) AS until FROM device_allocations a
      JOIN device_reservations r ON r.id = a.reservation_id
      WHERE a.active = 1 AND a.start_at < ? AND a.end_at > ? AND r.lease_id != ? GROUP BY a.device_id`)
      .all(end, start, exceptLeaseId ?? '') as { device_id: string; until: number }[];
    return new Map(rows.map((r) => [r.device_id, r.until]));
  }

  /** Creates the lease with its reservations, allocations and events; 409 when devices are short. */
  create(req: LeaseCreateRequest, who: { projectId: string; userId: string }): string {
    const tx = this.db.transaction(() => {
      const dup = this.db.prepare(`SELECT id FROM device_leases WHERE project_id = ? AND name = ? AND status NOT IN ('TERMINATED', 'ERROR')`)
        .get(who.projectId, req.name);
      if (dup) throw new CloudletError('Conflict', `A lease named '${req.name}' already exists in this project`);
      const t = this.now();
      const leaseId = randomUUID();
      this.db.prepare(`INSERT INTO device_leases (id, name, project_id, user_id, start_at, end_at, before_end_at, status, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?)`)
        .run(leaseId, req.name, who.projectId, who.userId, req.startAt, req.endAt, req.beforeEndAt, t, t);
      const busy = this.busyDevices(req.startAt, req.endAt);
      const taken = new Set<string>();
      const devices = this.inventory.list();
      req.reservations.forEach((r, i) => {
        const matching = devices.filter((d) => usableBy(d, who.projectId) && matchesFilter(r.filter, deviceAttributes(d)));
        const free = matching.filter((d) => !busy.has(d.id) && !taken.has(d.id) && !this.isDown(d.id));
        if (free.length < r.min) throw this.shortage(i, r.min, r.filterText, matching, free, busy, req.startAt, req.endAt);
        const chosen = free.slice(0, r.max);
        const resId = randomUUID();
        this.db.prepare(`INSERT INTO device_reservations (id, lease_id, resource_type, min_count, max_count, resource_properties, status, created_at, updated_at)
          VALUES (?, ?, 'device', ?, ?, ?, 'pending', ?, ?)`).run(resId, leaseId, r.min, r.max, r.filterText, t, t);
        for (const d of chosen) {
          taken.add(d.id);
          this.db.prepare(`INSERT INTO device_allocations (id, reservation_id, device_id, start_at, end_at, active) VALUES (?, ?, ?, ?, ?, 1)`)
            .run(randomUUID(), resId, d.id, req.startAt, req.endAt);
        }
      });
      const ev = this.db.prepare(`INSERT INTO device_lease_events (id, lease_id, event_type, time, status, created_at, updated_at)
        VALUES (?, ?, ?, ?, 'UNDONE', ?, ?)`);
      ev.run(randomUUID(), leaseId, 'start_lease', req.startAt, t, t);
      ev.run(randomUUID(), leaseId, 'before_end_lease', req.beforeEndAt, t, t);
      ev.run(randomUUID(), leaseId, 'end_lease', req.endAt, t, t);
      return leaseId;
    });
    return tx.immediate();
  }

  private shortage(i: number, min: number, filterText: string, matching: Device[], free: Device[],
    busy: Map<string, number>, start: number, end: number): CloudletError {
    const window = `between ${formatApiDate(start)} and ${formatApiDate(end)} UTC`;
    const what = filterText ? `matching ${filterText}` : '';
    if (matching.length === 0) {
      return new CloudletError('Conflict', `Not enough devices available: reservation ${i + 1} needs ${min} device(s) ${what} and no enrolled device your project may use matches`);
    }
    const reasons = matching.filter((d) => !free.includes(d)).map((d) => {
      const why: string[] = [];
      if (busy.has(d.id)) why.push(`reserved until ${formatApiDate(busy.get(d.id)!)}`);
      if (this.isDown(d.id)) why.push('unreachable');
      if (!why.length) why.push('taken by another reservation of this lease');
      return `${d.name} is ${why.join(' and ')}`;
    });
    return new CloudletError('Conflict',
      `Not enough devices available: reservation ${i + 1} needs ${min} device(s) ${what} ${window}; ${matching.length} match, ${free.length} free (${reasons.join(', ')})`);
  }

  /**
   * Moves the lease's window (extend, shorten, defer a pending lease). The devices stay the same:
   * when another reservation holds one of them in the new window the change is refused with 409.
   */
  update(lease: LeaseRow, req: LeaseUpdateRequest): void {
    const tx = this.db.transaction(() => {
      const cur = this.db.prepare('SELECT * FROM device_leases WHERE id = ?').get(lease.id) as LeaseRow;
      if (cur.status === 'TERMINATED' || cur.status === 'TERMINATING' || cur.status === 'ERROR') {
        throw new CloudletError('Conflict', `Lease ${cur.id} is ${cur.status} and cannot be changed`);
      }
      const t = this.now();
      const startAt = req.startAt ?? cur.start_at;
      const endAt = req.endAt ?? cur.end_at;
      if (req.name !== undefined && req.name !== cur.name) {
        const dup = this.db.prepare(`SELECT id FROM device_leases WHERE project_id = ? AND name = ? AND id != ? AND status NOT IN ('TERMINATED', 'ERROR')`)
          .get(cur.project_id, req.name, cur.id);
        if (dup) throw new CloudletError('Conflict', `A lease named '${req.name}' already exists in this project`);
      }
      if (startAt !== cur.start_at || endAt !== cur.end_at) {
        const mine = (this.db.prepare(`SELECT a.device_id FROM device_allocations a JOIN device_reservations r ON r.id = a.reservation_id
          WHERE r.lease_id = ? AND a.active = 1`).all(cur.id) as { device_id: string }[]).map((r) => r.device_id);
        const busy = this.busyDevices(startAt, endAt, cur.id);
        const clash = mine.filter((id) => busy.has(id));
        if (clash.length) {
          const names = clash.map((id) => `${this.inventory.find(id)?.name ?? id} is reserved by another lease until ${formatApiDate(busy.get(id)!)}`);
          throw new CloudletError('Conflict', `Cannot move lease ${cur.name} to ${formatApiDate(startAt)} - ${formatApiDate(endAt)} UTC: ${names.join(', ')}`);
        }
        this.db.prepare(`UPDATE device_allocations SET start_at = ?, end_at = ? WHERE active = 1 AND reservation_id IN
          (SELECT id FROM device_reservations WHERE lease_id = ?)`).run(startAt, endAt, cur.id);
        const setEvent = this.db.prepare(`UPDATE device_lease_events SET time = ?, updated_at = ? WHERE lease_id = ? AND event_type = ? AND status = 'UNDONE'`);
        setEvent.run(startAt, t, cur.id, 'start_lease');
        setEvent.run(endAt, t, cur.id, 'end_lease');
      }
      let beforeEnd = req.beforeEndAt ?? cur.before_end_at;
      if (req.beforeEndAt === undefined && req.endAt !== undefined && beforeEnd !== null) {
        // Keep the before-end reminder the same distance before the (new) end.
        beforeEnd = Math.max(startAt, endAt - (cur.end_at - beforeEnd));
      }
      if (beforeEnd !== null && beforeEnd !== cur.before_end_at) {
        this.db.prepare(`UPDATE device_lease_events SET time = ?, updated_at = ? WHERE lease_id = ? AND event_type = 'before_end_lease' AND status = 'UNDONE'`)
          .run(beforeEnd, t, cur.id);
      }
      this.db.prepare(`UPDATE device_leases SET name = ?, start_at = ?, end_at = ?, before_end_at = ?, updated_at = ? WHERE id = ?`)
        .run(req.name ?? cur.name, startAt, endAt, beforeEnd, t, cur.id);
    });
    tx.immediate();
  }
}
