/**
 * Device calls of the typed client: devices, leases (Blazar v1), containers on reserved devices
 * (Zun v1) and, for admins, the inventory. Services are found through the Keystone catalog
 * ('reservation', 'container', 'inventory'), like every other call of CloudletClient.
 *
 *   const dev = devicesApi(client);
 *   const lease = await dev.createLease({ name: 'exp', machineName: 'raspberrypi4-64', minutes: 120 });
 *   const c = await dev.runContainer({ reservationId: lease.reservations[0].id, image: '127.0.0.1:5000/app:1' });
 */
import type { CloudletClient } from './client';
import { CloudletError } from '../common/errors';

/** Zun microversion this client speaks (the daemon accepts 1.1 ... 1.41). */
export const CONTAINER_API_VERSION = 'container 1.41';

export type LeaseStatus = 'PENDING' | 'STARTING' | 'ACTIVE' | 'TERMINATING' | 'TERMINATED' | 'ERROR' | string;

export interface DeviceHealth { status: 'up' | 'down' | 'unknown'; checked_at: string | null; error?: string }

/** A device as project members see it (GET /reservation/v1/devices). */
export interface Device {
  id: string; name: string; machine_name: string; model: string | null; device_type: string; device_driver: string;
  properties: Record<string, unknown>; health: DeviceHealth; reservable: boolean; created_at: string; updated_at: string;
}

/** An enrolled device as admins see it (inventory); includes the engine endpoint. */
export interface Hardware {
  uuid: string; name: string; hardware_type: string; project_id: string; properties: Record<string, unknown>;
  authorized_projects: string[]; engine_endpoint: string; health: DeviceHealth; created_at: string; updated_at: string;
}

export interface Reservation {
  id: string; lease_id: string; status: 'pending' | 'active' | 'deleted' | 'error' | string; resource_type: string;
  resource_id: string; min: number; max: number; resource_properties: string; missing_resources: boolean;
  resources_changed: boolean; allocated_devices: string[]; created_at: string; updated_at: string;
}

export interface LeaseEvent { id: string; lease_id: string; event_type: 'start_lease' | 'before_end_lease' | 'end_lease'; time: string; status: string }

export interface Lease {
  id: string; name: string; user_id: string; project_id: string; start_date: string; end_date: string;
  before_end_date: string | null; status: LeaseStatus; degraded: boolean; degraded_reason: string | null;
  reservations: Reservation[]; events: LeaseEvent[]; created_at: string; updated_at: string;
}

export interface DeviceAllocation {
  resource_id: string; name: string; machine_name: string;
  reservations: { id: string | null; lease_id: string | null; lease_name: string | null; status: LeaseStatus; mine: boolean; start_date: string; end_date: string }[];
}

export type ContainerStatus = 'Creating' | 'Created' | 'Running' | 'Stopped' | 'Error' | 'Deleting' | string;

export interface Container {
  uuid: string; name: string; image: string; command: string[]; status: ContainerStatus; status_reason: string | null;
  environment: Record<string, string>; ports: number[]; exposed_ports: Record<string, object>; host: string;
  reservation_id: string; lease_id: string; device_id: string; device_name: string; project_id: string; user_id: string;
  created_at: string; updated_at: string; [k: string]: unknown;
}

/** Blazar's date form "YYYY-MM-DD HH:MM" in UTC; with `seconds`, ":SS" too (this daemon accepts it, upstream Blazar does not). */
export function leaseDate(d: Date, seconds = false): string {
  return d.toISOString().slice(0, seconds ? 19 : 16).replace('T', ' ');
}

export interface CreateLeaseOptions {
  name: string;
  /** Date or "now" (default). */
  start?: Date | 'now';
  /** End date, or `minutes` after the start. */
  end?: Date;
  minutes?: number;
  /** Shorthand filter: ["==", "$machine_name", X]. */
  machineName?: string;
  /** Full resource_properties filter (JSON array or its text); combined with machineName by "and". */
  filter?: unknown[] | string;
  min?: number;
  max?: number;
  beforeEnd?: Date;
  /** Send dates to the second (short leases on this daemon); default: minutes, as upstream Blazar takes them. */
  exactSeconds?: boolean;
}

export interface RunContainerOptions {
  reservationId: string;
  image: string;
  name?: string;
  command?: string | string[];
  environment?: Record<string, string>;
  /** e.g. ["8080/tcp"] */
  exposedPorts?: string[];
  /** A device name when the reservation holds several. */
  device?: string;
  network?: 'host' | 'none';
  imagePullPolicy?: 'always' | 'ifnotpresent' | 'never';
  /** Start it right away (default true). */
  run?: boolean;
}

const enc = encodeURIComponent;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function resourceProperties(o: { machineName?: string; filter?: unknown[] | string }): string {
  const parts: unknown[] = [];
  if (o.machineName) parts.push(['==', '$machine_name', o.machineName]);
  if (o.filter) parts.push(typeof o.filter === 'string' ? JSON.parse(o.filter) : o.filter);
  if (parts.length === 0) return '';
  return JSON.stringify(parts.length === 1 ? parts[0] : ['and', ...parts]);
}

export class DevicesApi {
  constructor(readonly client: CloudletClient) {}

  private zun<T = unknown>(method: string, path: string, body?: Record<string, unknown>): Promise<T> {
    return this.client.call<T>('container', method, path, body, { 'OpenStack-API-Version': CONTAINER_API_VERSION });
  }

  // ---- devices (project view) ----
  async listDevices(): Promise<Device[]> { return (await this.client.call<{ devices: Device[] }>('reservation', 'GET', '/devices')).devices; }
  async getDevice(idOrName: string): Promise<Device> { return (await this.client.call<{ device: Device }>('reservation', 'GET', `/devices/${enc(idOrName)}`)).device; }
  /** Leases per device on a time axis (the Reservations panel). */
  async allocations(): Promise<DeviceAllocation[]> {
    return (await this.client.call<{ allocations: DeviceAllocation[] }>('reservation', 'GET', '/devices/allocations')).allocations;
  }

  // ---- leases ----
  async listLeases(o: { allProjects?: boolean } = {}): Promise<Lease[]> {
    return (await this.client.call<{ leases: Lease[] }>('reservation', 'GET', `/leases${o.allProjects ? '?all_projects=1' : ''}`)).leases;
  }
  async getLease(id: string): Promise<Lease> { return (await this.client.call<{ lease: Lease }>('reservation', 'GET', `/leases/${enc(id)}`)).lease; }

  /** A lease with one device reservation. 409 (ApiError) says why when no device is free. */
  async createLease(o: CreateLeaseOptions): Promise<Lease> {
    const startDate = o.start && o.start !== 'now' ? o.start : undefined;
    const startMs = startDate ? startDate.getTime() : Date.now();
    const end = o.end ?? (o.minutes !== undefined ? new Date(startMs + o.minutes * 60_000) : undefined);
    if (!end) throw new CloudletError('BadInput', 'a lease needs an end date or a length in minutes');
    const body = {
      name: o.name,
      start_date: startDate ? leaseDate(startDate, o.exactSeconds) : 'now',
      end_date: leaseDate(end, o.exactSeconds),
      ...(o.beforeEnd ? { before_end_date: leaseDate(o.beforeEnd, o.exactSeconds) } : {}),
      reservations: [{ resource_type: 'device', min: o.min ?? 1, max: o.max ?? o.min ?? 1, resource_properties: resourceProperties(o) }],
      events: [],
    };
    return (await this.client.call<{ lease: Lease }>('reservation', 'POST', '/leases', body)).lease;
  }
  async updateLease(id: string, values: { name?: string; start_date?: string; end_date?: string; before_end_date?: string }): Promise<Lease> {
    return (await this.client.call<{ lease: Lease }>('reservation', 'PUT', `/leases/${enc(id)}`, values)).lease;
  }
  /** New end date (only when the devices stay free; otherwise 409 with the reason). */
  extendLease(id: string, end: Date, exactSeconds = false): Promise<Lease> { return this.updateLease(id, { end_date: leaseDate(end, exactSeconds) }); }
  /** Ends a running lease now (its containers are stopped and removed); the lease stays listed as TERMINATED. */
  endLease(id: string): Promise<Lease> { return this.updateLease(id, { end_date: 'now' }); }
  async deleteLease(id: string): Promise<void> { await this.client.call('reservation', 'DELETE', `/leases/${enc(id)}`); }

  async waitLease(id: string, want: LeaseStatus[], o: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<Lease> {
    const deadline = Date.now() + (o.timeoutMs ?? 600_000);
    for (;;) {
      const l = await this.getLease(id);
      if (want.includes(l.status)) return l;
      if (Date.now() > deadline) throw new CloudletError('Timeout', `lease ${l.name} is still ${l.status}`);
      if (o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      await sleep(o.intervalMs ?? 1000);
    }
  }

  // ---- containers ----
  async listContainers(): Promise<Container[]> { return (await this.zun<{ containers: Container[] }>('GET', '/containers')).containers; }
  async getContainer(id: string): Promise<Container> { return this.zun<Container>('GET', `/containers/${enc(id)}`); }
  /** Creates (and by default starts) a container on a device of the reservation; returns at once (status Creating). */
  async runContainer(o: RunContainerOptions): Promise<Container> {
    const body: Record<string, unknown> = {
      image: o.image,
      hints: { reservation: o.reservationId, ...(o.device ? { device: o.device } : {}), ...(o.network ? { network: o.network } : {}) },
      ...(o.name ? { name: o.name } : {}),
      ...(o.command !== undefined ? { command: o.command } : {}),
      ...(o.environment ? { environment: o.environment } : {}),
      ...(o.exposedPorts ? { exposed_ports: Object.fromEntries(o.exposedPorts.map((p) => [p.includes('/') ? p : `${p}/tcp`, {}])) } : {}),
      ...(o.imagePullPolicy ? { image_pull_policy: o.imagePullPolicy } : {}),
    };
    return this.zun<Container>('POST', `/containers${o.run === false ? '' : '?run=true'}`, body);
  }
  async startContainer(id: string): Promise<void> { await this.zun('POST', `/containers/${enc(id)}/start`); }
  async stopContainer(id: string, timeoutS?: number): Promise<void> {
    await this.zun('POST', `/containers/${enc(id)}/stop${timeoutS !== undefined ? `?timeout=${timeoutS}` : ''}`);
  }
  async containerLogs(id: string, o: { tail?: number; timestamps?: boolean; stdout?: boolean; stderr?: boolean } = {}): Promise<string> {
    const q = new URLSearchParams();
    if (o.tail !== undefined) q.set('tail', String(o.tail));
    if (o.timestamps) q.set('timestamps', 'true');
    if (o.stdout === false) q.set('stdout', 'false');
    if (o.stderr === false) q.set('stderr', 'false');
    const qs = q.toString();
    return this.zun<string>('GET', `/containers/${enc(id)}/logs${qs ? `?${qs}` : ''}`);
  }
  async execute(id: string, command: string): Promise<{ output: string; exit_code: number | null }> {
    return this.zun('POST', `/containers/${enc(id)}/execute?run=true`, { command });
  }
  async deleteContainer(id: string, o: { force?: boolean } = { force: true }): Promise<void> {
    await this.zun('DELETE', `/containers/${enc(id)}${o.force ? '?force=True' : ''}`);
  }
  async waitContainer(id: string, want: ContainerStatus[] = ['Running'], o: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<Container> {
    const deadline = Date.now() + (o.timeoutMs ?? 300_000);
    for (;;) {
      const c = await this.getContainer(id);
      if (want.includes(c.status)) return c;
      if (c.status === 'Error') throw new CloudletError('Internal', `container ${c.name} failed: ${c.status_reason ?? 'unknown error'}`);
      if (Date.now() > deadline) throw new CloudletError('Timeout', `container ${c.name} is still ${c.status}`);
      if (o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
      await sleep(o.intervalMs ?? 500);
    }
  }

  // ---- inventory (admin) ----
  async listHardware(): Promise<Hardware[]> { return (await this.client.call<{ hardware: Hardware[] }>('inventory', 'GET', '/hardware')).hardware; }
  async getHardware(id: string): Promise<Hardware> { return this.client.call<Hardware>('inventory', 'GET', `/hardware/${enc(id)}`); }
  async enrollDevice(o: { name: string; machineName: string; model?: string; engineEndpoint: string; properties?: Record<string, unknown>; authorizedProjects?: string[] }): Promise<Hardware> {
    return this.client.call<Hardware>('inventory', 'POST', '/hardware', {
      name: o.name, hardware_type: 'device.docker', machine_name: o.machineName, model: o.model,
      engine_endpoint: o.engineEndpoint, properties: o.properties ?? {}, authorized_projects: o.authorizedProjects ?? [],
    });
  }
  /** JSON-Patch, e.g. [{op: 'add', path: '/authorized_projects/-', value: projectId}]. */
  async patchDevice(id: string, ops: { op: string; path: string; value?: unknown }[]): Promise<Hardware> {
    return this.client.call<Hardware>('inventory', 'PATCH', `/hardware/${enc(id)}`, ops);
  }
  async removeDevice(id: string): Promise<void> { await this.client.call('inventory', 'DELETE', `/hardware/${enc(id)}`); }
}

export function devicesApi(client: CloudletClient): DevicesApi {
  return new DevicesApi(client);
}
