/**
 * Validation of Blazar lease bodies (create and update) into plain values. Everything a client
 * can get wrong is refused here with 400, before the scheduler touches the database.
 */
import { CloudletError } from '../common/errors';
import { parseLeaseDate, startOfMinute, formatApiDate } from './leaseDates';
import { parseResourceFilter, type ResourceFilter } from './resourceFilter';

export interface DeviceReservationRequest {
  resourceType: 'device';
  min: number;
  max: number;
  filterText: string;
  filter: ResourceFilter;
}

export interface LeaseCreateRequest {
  name: string;
  startAt: number;
  endAt: number;
  beforeEndAt: number;
  reservations: DeviceReservationRequest[];
}

/** Blazar's default: the before_end_lease event an hour before the end (not before the start). */
export const BEFORE_END_DEFAULT_MS = 60 * 60 * 1000;

function count(v: unknown, field: string, fallback: number): number {
  if (v === undefined || v === null || v === '') return fallback;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new CloudletError('BadInput', `${field} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function checkWindow(startAt: number, endAt: number, now: number, startIsNow: boolean): void {
  if (endAt <= startAt) {
    throw new CloudletError('BadInput', `end_date ${formatApiDate(endAt)} must be later than start_date ${startIsNow ? 'now' : formatApiDate(startAt)}`);
  }
  if (!startIsNow && startAt < startOfMinute(now)) {
    throw new CloudletError('BadInput', `start_date ${formatApiDate(startAt)} is in the past; use "now" or a later date`);
  }
}

export function parseLeaseCreate(body: unknown, now: number): LeaseCreateRequest {
  if (!body || typeof body !== 'object') throw new CloudletError('BadInput', 'body must be a JSON object with name, start_date, end_date, reservations');
  const b = body as Record<string, unknown>;
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 80) throw new CloudletError('BadInput', 'name is required (at most 80 characters)');
  const startAt = parseLeaseDate(b.start_date ?? 'now', 'start_date', now);
  const endAt = parseLeaseDate(b.end_date, 'end_date', now);
  checkWindow(startAt, endAt, now, b.start_date === undefined || b.start_date === 'now');
  let beforeEndAt = Math.max(startAt, endAt - BEFORE_END_DEFAULT_MS);
  if (b.before_end_date !== undefined && b.before_end_date !== null && b.before_end_date !== '') {
    beforeEndAt = parseLeaseDate(b.before_end_date, 'before_end_date', now);
    if (beforeEndAt < startAt || beforeEndAt > endAt) throw new CloudletError('BadInput', 'before_end_date must lie between start_date and end_date');
  }
  if (!Array.isArray(b.reservations) || b.reservations.length === 0) {
    throw new CloudletError('BadInput', 'reservations must list at least one {"resource_type": "device", "min": 1, "max": 1}');
  }
  const reservations = b.reservations.map((r: unknown, i: number): DeviceReservationRequest => {
    if (!r || typeof r !== 'object') throw new CloudletError('BadInput', `reservations[${i}] must be an object`);
    const rr = r as Record<string, unknown>;
    if (rr.resource_type !== 'device') {
      throw new CloudletError('BadInput', `reservations[${i}]: resource_type '${String(rr.resource_type)}' is not supported here; use "device"`);
    }
    const min = count(rr.min, 'min', 1);
    const max = count(rr.max, 'max', min);
    if (min > max) throw new CloudletError('BadInput', `reservations[${i}]: min (${min}) is greater than max (${max})`);
    const raw = rr.resource_properties ?? '';
    const filterText = typeof raw === 'string' ? raw : JSON.stringify(raw);
    return { resourceType: 'device', min, max, filterText, filter: parseResourceFilter(filterText) };
  });
  return { name: b.name, startAt, endAt, beforeEndAt, reservations };
}

export interface LeaseUpdateRequest { name?: string; startAt?: number; endAt?: number; beforeEndAt?: number }

/** PUT /v1/leases/{id}: name, start_date (pending leases only), end_date (extend or shorten), before_end_date. */
export function parseLeaseUpdate(body: unknown, now: number, current: { startAt: number; endAt: number; started: boolean }): LeaseUpdateRequest {
  if (!body || typeof body !== 'object') throw new CloudletError('BadInput', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (b.reservations !== undefined) throw new CloudletError('BadInput', 'changing reservations of a device lease is not supported; create a new lease');
  const out: LeaseUpdateRequest = {};
  if (b.name !== undefined) {
    if (typeof b.name !== 'string' || b.name.trim() === '') throw new CloudletError('BadInput', 'name must be a non-empty string');
    out.name = b.name;
  }
  if (b.start_date !== undefined) {
    if (current.started) throw new CloudletError('BadInput', 'start_date of a lease that already started cannot change');
    out.startAt = parseLeaseDate(b.start_date, 'start_date', now);
  }
  if (b.end_date !== undefined) {
    out.endAt = parseLeaseDate(b.end_date, 'end_date', now);
    // Ending "now" or at a past minute of a running lease means: end it at once.
    if (out.endAt < now && out.endAt >= startOfMinute(now)) out.endAt = now;
    if (out.endAt < now) throw new CloudletError('BadInput', `end_date ${formatApiDate(out.endAt)} is in the past`);
  }
  const startAt = out.startAt ?? current.startAt;
  const endAt = out.endAt ?? current.endAt;
  if (out.startAt !== undefined || out.endAt !== undefined) {
    checkWindow(startAt, endAt, now, out.startAt === undefined || b.start_date === 'now');
  }
  if (b.before_end_date !== undefined && b.before_end_date !== null) {
    out.beforeEndAt = parseLeaseDate(b.before_end_date, 'before_end_date', now);
    if (out.beforeEndAt < startAt || out.beforeEndAt > endAt) throw new CloudletError('BadInput', 'before_end_date must lie between start_date and end_date');
  }
  return out;
}
