/**
 * Enrolled devices (Doni-like "hardware"). Admin-facing shape includes the engine endpoint;
 * `publicView` is what project members get through the reservation API (no endpoint).
 */
import { randomUUID } from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { CloudletError } from '../common/errors';
import { applyJsonPatch } from './jsonPatch';
import { parseEngineEndpoint } from './engineEndpoint';
import type { DeviceAttributes } from './resourceFilter';
import { formatLeaseDate } from './leaseDates';

export interface Device {
  id: string;
  name: string;
  hardwareType: string;
  projectId: string;
  properties: Record<string, unknown>;
  authorizedProjects: string[];
  engineEndpoint: string;
  createdAt: number;
  updatedAt: number;
}

interface DeviceRow {
  id: string; name: string; hardware_type: string; project_id: string; properties: string;
  authorized_projects: string; engine_endpoint: string; created_at: number; updated_at: number;
}

function fromRow(r: DeviceRow): Device {
  return {
    id: r.id, name: r.name, hardwareType: r.hardware_type, projectId: r.project_id,
    properties: JSON.parse(r.properties) as Record<string, unknown>,
    authorizedProjects: JSON.parse(r.authorized_projects) as string[],
    engineEndpoint: r.engine_endpoint, createdAt: r.created_at, updatedAt: r.updated_at,
  };
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** What an enrollment request may carry (Doni's shape plus our top-level conveniences). */
export interface EnrollInput {
  name?: unknown; hardware_type?: unknown; machine_name?: unknown; model?: unknown;
  properties?: unknown; authorized_projects?: unknown; engine_endpoint?: unknown;
}

function validate(d: Device): void {
  if (typeof d.name !== 'string' || !NAME_RE.test(d.name)) {
    throw new CloudletError('BadInput', `device name '${String(d.name)}' must be 1-63 letters, digits, '.', '_' or '-'`);
  }
  if (!d.properties || typeof d.properties !== 'object' || Array.isArray(d.properties)) {
    throw new CloudletError('BadInput', 'properties must be an object');
  }
  if (typeof d.properties.machine_name !== 'string' || d.properties.machine_name === '') {
    throw new CloudletError('BadInput', 'machine_name is required (e.g. raspberrypi4-64)');
  }
  if (!Array.isArray(d.authorizedProjects) || !d.authorizedProjects.every((p) => typeof p === 'string')) {
    throw new CloudletError('BadInput', 'authorized_projects must be a list of project ids');
  }
  parseEngineEndpoint(d.engineEndpoint);
}

export class DeviceInventory {
  constructor(private readonly db: BetterSqlite3.Database, private readonly now: () => number = Date.now) {}

  enroll(input: EnrollInput, ownerProjectId: string): Device {
    const props = { ...((input.properties && typeof input.properties === 'object' ? input.properties : {}) as Record<string, unknown>) };
    if (input.properties !== undefined && (typeof input.properties !== 'object' || Array.isArray(input.properties))) {
      throw new CloudletError('BadInput', 'properties must be an object');
    }
    if (input.machine_name !== undefined) props.machine_name = input.machine_name;
    if (input.model !== undefined) props.model = input.model;
    // Doni keeps authorized projects among the properties; accept either place.
    const authorized = input.authorized_projects ?? props.authorized_projects ?? [];
    delete props.authorized_projects;
    const endpoint = input.engine_endpoint ?? props.engine_endpoint;
    delete props.engine_endpoint;
    const t = this.now();
    const d: Device = {
      id: randomUUID(), name: input.name as string,
      hardwareType: typeof input.hardware_type === 'string' ? input.hardware_type : 'device.docker',
      projectId: ownerProjectId, properties: props, authorizedProjects: authorized as string[],
      engineEndpoint: endpoint as string, createdAt: t, updatedAt: t,
    };
    validate(d);
    if (this.find(d.name)) throw new CloudletError('Conflict', `a device named '${d.name}' is already enrolled`);
    this.db.prepare(`INSERT INTO devices (id, name, hardware_type, project_id, properties, authorized_projects,
      engine_endpoint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(d.id, d.name, d.hardwareType, d.projectId, JSON.stringify(d.properties), JSON.stringify(d.authorizedProjects),
        d.engineEndpoint, d.createdAt, d.updatedAt);
    return d;
  }

  list(): Device[] {
    return (this.db.prepare('SELECT * FROM devices ORDER BY name').all() as DeviceRow[]).map(fromRow);
  }

  /** By uuid or by name. */
  find(idOrName: string): Device | undefined {
    const r = this.db.prepare('SELECT * FROM devices WHERE id = ? OR name = ?').get(idOrName, idOrName) as DeviceRow | undefined;
    return r && fromRow(r);
  }

  get(idOrName: string): Device {
    const d = this.find(idOrName);
    if (!d) throw new CloudletError('NotFound', `device '${idOrName}' not found`);
    return d;
  }

  /** JSON-Patch over {name, properties, authorized_projects, engine_endpoint}. */
  patch(idOrName: string, ops: unknown): Device {
    const d = this.get(idOrName);
    const doc = { name: d.name, properties: d.properties, authorized_projects: d.authorizedProjects, engine_endpoint: d.engineEndpoint };
    for (const op of Array.isArray(ops) ? ops as { path?: unknown }[] : []) {
      const top = typeof op?.path === 'string' ? op.path.split('/')[1] : '';
      if (!(top in doc)) throw new CloudletError('BadInput', `path '${String(op?.path)}' is not writable (name, properties, authorized_projects, engine_endpoint)`);
    }
    const next = applyJsonPatch(doc, ops);
    const updated: Device = {
      ...d, name: next.name, properties: next.properties, authorizedProjects: next.authorized_projects,
      engineEndpoint: next.engine_endpoint, updatedAt: this.now(),
    };
    validate(updated);
    if (updated.name !== d.name && this.find(updated.name)) throw new CloudletError('Conflict', `a device named '${updated.name}' is already enrolled`);
    this.db.prepare(`UPDATE devices SET name = ?, properties = ?, authorized_projects = ?, engine_endpoint = ?, updated_at = ? WHERE id = ?`)
      .run(updated.name, JSON.stringify(updated.properties), JSON.stringify(updated.authorizedProjects), updated.engineEndpoint, updated.updatedAt, d.id);
    return updated;
  }

  /** Refused while a pending or active lease holds the device (end those leases first). */
  remove(idOrName: string): void {
    const d = this.get(idOrName);
    const held = this.db.prepare(`SELECT COUNT(*) AS n FROM device_allocations WHERE device_id = ? AND active = 1`).get(d.id) as { n: number };
    if (held.n > 0) throw new CloudletError('Conflict', `device '${d.name}' is held by ${held.n} lease reservation(s); end them first`);
    this.db.prepare('DELETE FROM devices WHERE id = ?').run(d.id);
  }
}

export function usableBy(d: Device, projectId: string): boolean {
  return d.authorizedProjects.length === 0 || d.authorizedProjects.includes(projectId);
}

/** What a filter can reference: `$name`, `$uid`, `$machine_name`, `$model`, any property. */
export function deviceAttributes(d: Device): DeviceAttributes {
  return { ...d.properties, name: d.name, uid: d.id, hardware_type: d.hardwareType };
}

export interface DeviceHealthView { status: 'up' | 'down' | 'unknown'; checked_at: string | null; error?: string }

/** Doni-like hardware object for admins (includes the engine endpoint). */
export function adminView(d: Device, health?: DeviceHealthView): Record<string, unknown> {
  return {
    uuid: d.id, name: d.name, hardware_type: d.hardwareType, project_id: d.projectId,
    properties: d.properties, authorized_projects: d.authorizedProjects, engine_endpoint: d.engineEndpoint,
    health: health ?? { status: 'unknown', checked_at: null },
    created_at: formatLeaseDate(d.createdAt), updated_at: formatLeaseDate(d.updatedAt),
  };
}

/** Blazar-device-like object for project members: never the engine endpoint. */
export function publicView(d: Device, health?: DeviceHealthView): Record<string, unknown> {
  return {
    id: d.id, name: d.name, device_type: 'container', device_driver: 'docker',
    machine_name: d.properties.machine_name, model: d.properties.model ?? null,
    properties: d.properties, health: health ?? { status: 'unknown', checked_at: null },
    reservable: health?.status !== 'down',
    created_at: formatLeaseDate(d.createdAt), updated_at: formatLeaseDate(d.updatedAt),
  };
}
