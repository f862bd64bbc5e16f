/**
 * Reading leases, their reservations, allocations and events out of SQLite, and the Blazar v1
 * JSON shape of a lease. Writes live in LeaseScheduler (reserve/extend) and LeaseLifecycle (events).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { CloudletError } from '../common/errors';
import { formatLeaseDate } from './leaseDates';

export type LeaseStatus = 'PENDING' | 'STARTING' | 'ACTIVE' | 'TERMINATING' | 'TERMINATED' | 'ERROR';
export type EventType = 'start_lease' | 'before_end_lease' | 'end_lease';
export type EventStatus = 'UNDONE' | 'IN_PROGRESS' | 'DONE' | 'ERROR';

export interface LeaseRow {
  id: string; name: string; project_id: string; user_id: string; start_at: number; end_at: number;
  before_end_at: number | null; status: LeaseStatus; created_at: number; updated_at: number;
}
export interface ReservationRow {
  id: string; lease_id: string; resource_type: string; min_count: number; max_count: number;
  resource_properties: string; status: string; created_at: number; updated_at: number;
}
export interface AllocationRow { id: string; reservation_id: string; device_id: string; start_at: number; end_at: number; active: number }
export interface EventRow { id: string; lease_id: string; event_type: EventType; time: number; status: EventStatus; created_at: number; updated_at: number }

export interface LeaseDetail {
  lease: LeaseRow;
  reservations: (ReservationRow & { deviceIds: string[] })[];
  events: EventRow[];
}

/** Which devices of a lease are unreachable right now (for `degraded`). */
export type DownDevices = { id: string; name: string; error?: string }[];

export class LeaseStore {
  constructor(private readonly db: BetterSqlite3.Database) {}

  findLease(id: string): LeaseRow | undefined {
    return this.db.prepare('SELECT * FROM device_leases WHERE id = ?').get(id) as LeaseRow | undefined;
  }

  /** A lease the caller may see: 404 when missing, 403 when it is another project's (admins see all). */
  leaseFor(id: string, projectId: string, isAdmin: boolean): LeaseRow {
    const l = this.findLease(id);
    if (!l) throw new CloudletError('NotFound', `Lease ${id} not found`);
    if (l.project_id !== projectId && !isAdmin) throw new CloudletError('Forbidden', `Lease ${id} belongs to another project`);
    return l;
  }

  detail(leaseId: string): LeaseDetail {
    const lease = this.findLease(leaseId);
    if (!lease) throw new CloudletError('NotFound', `Lease ${leaseId} not found`);
    const reservations = (this.db.prepare('SELECT * FROM device_reservations WHERE lease_id = ? ORDER BY created_at, id').all(leaseId) as ReservationRow[])
      .map((r) => ({
        ...r,
        deviceIds: (this.db.prepare('SELECT device_id FROM device_allocations WHERE reservation_id = ? ORDER BY device_id').all(r.id) as { device_id: string }[])
          .map((a) => a.device_id),
      }));
    const events = this.db.prepare(`SELECT * FROM device_lease_events WHERE lease_id = ?
      ORDER BY time, CASE event_type WHEN 'start_lease' THEN 0 WHEN 'before_end_lease' THEN 1 ELSE 2 END`).all(leaseId) as EventRow[];
    return { lease, reservations, events };
  }

  list(projectId: string | null): LeaseRow[] {
    return (projectId === null
      ? this.db.prepare('SELECT * FROM device_leases ORDER BY start_at, id').all()
      : this.db.prepare('SELECT * FROM device_leases WHERE project_id = ? ORDER BY start_at, id').all(projectId)) as LeaseRow[];
  }

  reservation(id: string): ReservationRow | undefined {
    return this.db.prepare('SELECT * FROM device_reservations WHERE id = ?').get(id) as ReservationRow | undefined;
  }

  devicesOfReservation(id: string): string[] {
    return (this.db.prepare('SELECT device_id FROM device_allocations WHERE reservation_id = ?').all(id) as { device_id: string }[]).map((r) => r.device_id);
  }

  /** Every allocation still held (pending or active leases), for the Reservations time axis. */
  activeAllocations(): (AllocationRow & { lease_id: string; project_id: string; lease_name: string; status: LeaseStatus })[] {
    return this.db.prepare(`SELECT a.*, r.lease_id, l.project_id, l.name AS lease_name, l.status FROM device_allocations a
      JOIN device_reservations r ON r.id = a.reservation_id JOIN device_leases l ON l.id = r.lease_id
      WHERE a.active = 1 ORDER BY a.device_id, a.start_at`).all() as never;
  }
}

/** Blazar v1 lease body. `down` lists the lease's devices whose engine does not answer. */
export function leaseToBlazar(d: LeaseDetail, down: DownDevices = []): Record<string, unknown> {
  const l = d.lease;
  const live = l.status !== 'TERMINATED' && l.status !== 'ERROR';
  const downIds = new Set(down.map((x) => x.id));
  const degraded = live && down.length > 0;
  return {
    id: l.id, name: l.name, user_id: l.user_id, project_id: l.project_id,
    start_date: formatLeaseDate(l.start_at), end_date: formatLeaseDate(l.end_at),
    before_end_date: l.before_end_at === null ? null : formatLeaseDate(l.before_end_at),
    status: l.status, status_reason: null, trust_id: null,
    degraded,
    // Not in upstream Blazar: which device is the problem, in words (the extension shows it).
    degraded_reason: degraded ? down.map((x) => `device ${x.name} is unreachable${x.error ? ` (${x.error})` : ''}`).join('; ') : null,
    created_at: formatLeaseDate(l.created_at), updated_at: formatLeaseDate(l.updated_at),
    reservations: d.reservations.map((r) => {
      const lost = live && r.deviceIds.some((id) => downIds.has(id));
      return {
        id: r.id, lease_id: r.lease_id, status: r.status, resource_id: r.id, resource_type: r.resource_type,
        min: r.min_count, max: r.max_count, resource_properties: r.resource_properties,
        missing_resources: lost && r.status === 'pending', resources_changed: lost && r.status === 'active',
        allocated_devices: r.deviceIds,
        created_at: formatLeaseDate(r.created_at), updated_at: formatLeaseDate(r.updated_at),
      };
    }),
    events: d.events.map((e) => ({
      id: e.id, lease_id: e.lease_id, event_type: e.event_type, time: formatLeaseDate(e.time), status: e.status,
      created_at: formatLeaseDate(e.created_at), updated_at: formatLeaseDate(e.updated_at),
    })),
  };
}
