/**
 * Containers on reserved devices (the Zun API's logic). Every call first checks the reservation:
 * it must exist (400), belong to the caller's project (403), be in an ACTIVE lease (409) and hold
 * the device the container lives on (403); an unreachable device gives 503 naming it.
 * Also the reaper of ended leases: their containers are stopped and removed from the engine.
 */
import { randomUUID } from 'crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { CloudletError, describeError } from '../common/errors';
import type { Logger } from '../common/log';
import type { DeviceInventory, Device } from './deviceInventory';
import type { DeviceHealth } from './deviceHealth';
import type { LeaseStore, LeaseRow, ReservationRow } from './leaseStore';
import type { ContainerReaper } from './leaseLifecycle';
import { LABEL_CONTAINER, LABEL_LEASE, LABEL_RESERVATION, type ContainerDriver } from './containerDriver';
import { parseContainerCreate, splitCommand, type ContainerCreateRequest } from './containerRequest';
import { formatLeaseDate, formatApiDate } from './leaseDates';

export interface Caller { projectId: string; userId: string; isAdmin: boolean }

export interface ContainerRow {
  id: string; name: string; project_id: string; user_id: string; reservation_id: string; lease_id: string;
  device_id: string; engine_id: string | null; image: string; spec: string; status: string;
  status_reason: string | null; created_at: number; updated_at: number;
}

interface Spec {
  command?: string[]; entrypoint?: string[]; environment: Record<string, string>; labels: Record<string, string>;
  workdir?: string; exposed_ports: Record<string, Record<string, never>>; network: 'host' | 'none';
  image_pull_policy: string;
}

export interface ContainerServiceDeps {
  db: BetterSqlite3.Database;
  inventory: DeviceInventory;
  leases: LeaseStore;
  health: DeviceHealth;
  driver: (deviceId: string) => ContainerDriver;
  publish?: (data: Record<string, unknown>) => void;
  log?: Logger;
  now?: () => number;
}

export class ContainerService implements ContainerReaper {
  private readonly background = new Set<Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly d: ContainerServiceDeps) {
    this.now = d.now ?? Date.now;
  }

  // ---- the checks ---------------------------------------------------------------------------

  /** The reservation a call names, checked for the caller: 400 / 403 / 409. */
  private authorize(caller: Caller, reservationId: string | undefined): { reservation: ReservationRow; lease: LeaseRow; deviceIds: string[] } {
    if (!reservationId) {
      throw new CloudletError('BadInput', 'hints.reservation is required: containers run only on a device your project has reserved',
        { hint: 'create a lease with a device reservation and pass its reservation id (not the lease id)' });
    }
    const reservation = this.d.leases.reservation(reservationId);
    if (!reservation) throw new CloudletError('BadInput', `reservation ${reservationId} does not exist (use the reservation id from the lease's reservations, not the lease id)`);
    const lease = this.d.leases.findLease(reservation.lease_id)!;
    if (lease.project_id !== caller.projectId) throw new CloudletError('Forbidden', `reservation ${reservationId} belongs to another project`);
    if (lease.status !== 'ACTIVE') {
      const when = lease.status === 'PENDING' ? `; it starts at ${formatApiDate(lease.start_at)} UTC` : '';
      throw new CloudletError('Conflict', `lease ${lease.name} (${lease.id}) of reservation ${reservationId} is ${lease.status}, not ACTIVE${when}`);
    }
    return { reservation, lease, deviceIds: this.d.leases.devicesOfReservation(reservationId) };
  }

  /** 503 naming the device when its engine does not answer (re-pinged when the cache says down). */
  private async requireUp(device: Device): Promise<void> {
    const h = this.d.health.isDown(device.id) ? await this.d.health.check(device.id, 0) : this.d.health.cached(device.id);
    if (h.status === 'down') throw new CloudletError('Unavailable', `device ${device.name} is unreachable: ${h.error ?? 'its engine does not answer'}`);
  }

  /** Runs an engine call; an unreachable engine is remembered as down. */
  private async onEngine<T>(device: Device, fn: (drv: ContainerDriver) => Promise<T>): Promise<T> {
    try {
      return await fn(this.d.driver(device.id));
    } catch (e) {
      if (e instanceof CloudletError && e.code === 'Unavailable') this.d.health.markDown(device.id, e.message);
      throw e;
    }
  }

  private row(id: string): ContainerRow | undefined {
    return this.d.db.prepare('SELECT * FROM device_containers WHERE id = ?').get(id) as ContainerRow | undefined;
  }

  /**
   * The container a caller names by id or by name. Names are looked up in the caller's project
   * (two projects may both have a "web"); an admin asking with all_projects also finds others'.
   */
  private named(caller: Caller, id: string, allProjects = false): ContainerRow | undefined {
    const byId = this.row(id);
    if (byId) return byId;
    const byName = this.d.db.prepare(`SELECT * FROM device_containers WHERE name = ? AND status != 'Deleting' ORDER BY created_at`).all(id) as ContainerRow[];
    const own = byName.filter((c) => c.project_id === caller.projectId);
    if (own.length > 1 || (own.length === 0 && allProjects && caller.isAdmin && byName.length > 1)) {
      throw new CloudletError('Conflict', `several containers are named ${id}: use the id`);
    }
    return own[0] ?? (allProjects && caller.isAdmin ? byName[0] : undefined);
  }

  /** A container the caller may act on, with its device, after the reservation checks. */
  private async mine(caller: Caller, id: string): Promise<{ c: ContainerRow; device: Device }> {
    const c = this.named(caller, id);
    if (!c || c.status === 'Deleting') throw new CloudletError('NotFound', `container ${id} not found`);
    if (c.project_id !== caller.projectId) throw new CloudletError('Forbidden', `container ${id} belongs to another project`);
    const { deviceIds } = this.authorize(caller, c.reservation_id);
    if (!deviceIds.includes(c.device_id)) throw new CloudletError('Forbidden', `reservation ${c.reservation_id} does not hold the device of container ${c.name}`);
    const device = this.d.inventory.get(c.device_id);
    await this.requireUp(device);
    return { c, device };
  }

  private setStatus(id: string, status: string, reason: string | null = null, engineId?: string): void {
    if (engineId !== undefined) {
      this.d.db.prepare('UPDATE device_containers SET status = ?, status_reason = ?, engine_id = ?, updated_at = ? WHERE id = ?').run(status, reason, engineId, this.now(), id);
    } else {
      this.d.db.prepare('UPDATE device_containers SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?').run(status, reason, this.now(), id);
    }
    const c = this.d.db.prepare('SELECT project_id FROM device_containers WHERE id = ?').get(id) as { project_id: string } | undefined;
    this.d.publish?.({ id, status, project_id: c?.project_id });
  }

  // ---- the API ------------------------------------------------------------------------------

  async create(caller: Caller, body: unknown, runQuery: boolean): Promise<ContainerRow> {
    const req = parseContainerCreate(body, runQuery);
    const { reservation, lease, deviceIds } = this.authorize(caller, req.reservationId);
    let device: Device;
    if (req.device) {
      const wanted = this.d.inventory.find(req.device);
      if (!wanted || !deviceIds.includes(wanted.id)) throw new CloudletError('Forbidden', `reservation ${reservation.id} does not hold device ${req.device}`);
      device = wanted;
    } else {
      if (deviceIds.length === 0) throw new CloudletError('Conflict', `reservation ${reservation.id} holds no device`);
      // The reserved device with the fewest containers of this reservation.
      const counts = new Map(deviceIds.map((id) => [id, 0]));
      for (const r of this.d.db.prepare(`SELECT device_id, COUNT(*) AS n FROM device_containers WHERE reservation_id = ? GROUP BY device_id`).all(reservation.id) as { device_id: string; n: number }[]) {
        counts.set(r.device_id, r.n);
      }
      device = this.d.inventory.get([...counts.entries()].sort((a, b) => a[1] - b[1])[0][0]);
    }
    await this.requireUp(device);
    const name = req.name ?? `zun-${randomUUID().slice(0, 8)}`;
    const dup = this.d.db.prepare(`SELECT id FROM device_containers WHERE project_id = ? AND name = ? AND status != 'Deleting'`).get(caller.projectId, name);
    if (dup) throw new CloudletError('Conflict', `a container named ${name} already exists in this project`);
    const spec: Spec = {
      command: req.command, entrypoint: req.entrypoint, environment: req.environment, labels: req.labels, workdir: req.workdir,
      exposed_ports: req.exposedPorts, network: req.network, image_pull_policy: req.imagePullPolicy,
    };
    const id = randomUUID();
    const t = this.now();
    this.d.db.prepare(`INSERT INTO device_containers (id, name, project_id, user_id, reservation_id, lease_id, device_id, engine_id, image, spec, status, status_reason, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 'Creating', NULL, ?, ?)`)
      .run(id, name, caller.projectId, caller.userId, reservation.id, lease.id, device.id, req.image, JSON.stringify(spec), t, t);
    this.d.publish?.({ id, status: 'Creating', project_id: caller.projectId });
    this.track(this.provision(id, device, req));
    return this.row(id)!;
  }

  private track(p: Promise<void>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /** Pull, create (and start) on the engine, in the background after the 202. */
  private async provision(id: string, device: Device, req: ContainerCreateRequest): Promise<void> {
    const c = this.row(id)!;
    try {
      await this.onEngine(device, (drv) => drv.ensureImage(req.image, req.imagePullPolicy));
      const engineId = await this.onEngine(device, (drv) => drv.create({
        name: `zun-${id}`, image: req.image, command: req.command, entrypoint: req.entrypoint, environment: req.environment,
        workdir: req.workdir, exposedPorts: req.exposedPorts, network: req.network,
        labels: { ...req.labels, [LABEL_CONTAINER]: id, [LABEL_RESERVATION]: c.reservation_id, [LABEL_LEASE]: c.lease_id },
      }));
      // The lease may have ended (or the container been deleted) while the image was pulled.
      const now = this.row(id);
      const lease = this.d.leases.findLease(c.lease_id);
      if (!now || now.status === 'Deleting' || lease?.status !== 'ACTIVE') {
        await this.onEngine(device, (drv) => drv.remove(engineId, false));
        if (now) this.d.db.prepare('DELETE FROM device_containers WHERE id = ?').run(id);
        return;
      }
      this.setStatus(id, 'Created', null, engineId);
      if (req.run) {
        await this.onEngine(device, (drv) => drv.start(engineId));
        this.setStatus(id, 'Running');
      }
    } catch (e) {
      this.d.log?.warn(`container ${id} on ${device.name}: ${describeError(e)}`);
      if (this.row(id)?.status !== 'Deleting') this.setStatus(id, 'Error', describeError(e));
    }
  }

  list(caller: Caller, all = false): ContainerRow[] {
    return (all && caller.isAdmin
      ? this.d.db.prepare(`SELECT * FROM device_containers WHERE status != 'Deleting' ORDER BY created_at`).all()
      : this.d.db.prepare(`SELECT * FROM device_containers WHERE project_id = ? AND status != 'Deleting' ORDER BY created_at`).all(caller.projectId)) as ContainerRow[];
  }

  /** Show: the stored row, its status refreshed from the engine when the device answers. */
  async get(caller: Caller, id: string, allProjects = false): Promise<ContainerRow> {
    const c = this.named(caller, id, allProjects);
    if (!c || c.status === 'Deleting') throw new CloudletError('NotFound', `container ${id} not found`);
    if (c.project_id !== caller.projectId && !caller.isAdmin) throw new CloudletError('Forbidden', `container ${id} belongs to another project`);
    await this.refresh(c);
    return this.row(c.id)!;
  }

  private async refresh(c: ContainerRow): Promise<void> {
    if (!c.engine_id || c.status === 'Creating' || c.status === 'Error') return;
    if (this.d.health.isDown(c.device_id)) return;
    try {
      const s = await this.d.driver(c.device_id).state(c.engine_id);
      const status = s.status === 'Dead' || s.status === 'Unknown' ? 'Error' : s.status;
      if (status !== c.status) this.setStatus(c.id, status, s.error ?? (status === 'Stopped' && s.exitCode !== undefined ? `exited with code ${s.exitCode}` : null));
    } catch (e) {
      if (e instanceof CloudletError && e.code === 'Unavailable') this.d.health.markDown(c.device_id, e.message);
    }
  }

  async start(caller: Caller, id: string): Promise<ContainerRow> {
    const { c, device } = await this.mine(caller, id);
    if (!c.engine_id) throw new CloudletError('Conflict', `container ${c.name} is ${c.status}; it cannot start yet`);
    await this.onEngine(device, (drv) => drv.start(c.engine_id!));
    this.setStatus(c.id, 'Running');
    return this.row(c.id)!;
  }

  async stop(caller: Caller, id: string, timeoutS = 10): Promise<ContainerRow> {
    const { c, device } = await this.mine(caller, id);
    if (!c.engine_id) throw new CloudletError('Conflict', `container ${c.name} is ${c.status}; it cannot stop`);
    await this.onEngine(device, (drv) => drv.stop(c.engine_id!, timeoutS));
    this.setStatus(c.id, 'Stopped');
    return this.row(c.id)!;
  }

  async logs(caller: Caller, id: string, o: { stdout?: boolean; stderr?: boolean; tail?: number; timestamps?: boolean; since?: number }): Promise<string> {
    const { c, device } = await this.mine(caller, id);
    if (!c.engine_id) return '';
    return this.onEngine(device, (drv) => drv.logs(c.engine_id!, o));
  }

  async execute(caller: Caller, id: string, command: unknown): Promise<{ output: string; exit_code: number | null }> {
    const { c, device } = await this.mine(caller, id);
    const argv = typeof command === 'string' ? splitCommand(command) : Array.isArray(command) ? command.map(String) : [];
    if (argv.length === 0) throw new CloudletError('BadInput', 'command is required');
    if (!c.engine_id || c.status !== 'Running') throw new CloudletError('Conflict', `container ${c.name} is ${c.status}, not Running`);
    const r = await this.onEngine(device, (drv) => drv.exec(c.engine_id!, argv));
    return { output: r.output, exit_code: r.exitCode };
  }

  /** Zun's rule: a running container needs force (or stop) to be deleted. */
  async delete(caller: Caller, id: string, o: { force?: boolean; stop?: boolean }): Promise<void> {
    const c0 = this.named(caller, id);
    if (!c0 || c0.status === 'Deleting') throw new CloudletError('NotFound', `container ${id} not found`);
    if (c0.project_id !== caller.projectId) throw new CloudletError('Forbidden', `container ${id} belongs to another project`);
    const { c, device } = await this.mine(caller, id);
    await this.refresh(c);
    const cur = this.row(c.id)!;
    if (cur.status === 'Running' && !o.force && !o.stop) {
      throw new CloudletError('Conflict', `container ${cur.name} is Running: stop it first or delete with force=True`);
    }
    this.setStatus(c.id, 'Deleting');
    if (cur.engine_id) await this.onEngine(device, (drv) => drv.remove(cur.engine_id!, true));
    this.d.db.prepare('DELETE FROM device_containers WHERE id = ?').run(c.id);
    this.d.publish?.({ id: c.id, status: 'Deleted', project_id: c.project_id });
  }

  // ---- the reaper ---------------------------------------------------------------------------

  /** End of a lease: every container of it is stopped and removed; unreachable ones wait for a sweep. */
  async removeLeaseContainers(leaseId: string): Promise<void> {
    const rows = this.d.db.prepare('SELECT * FROM device_containers WHERE lease_id = ?').all(leaseId) as ContainerRow[];
    for (const r of rows) this.setStatus(r.id, 'Deleting', 'the lease ended');
    const devices = new Set<string>(rows.map((r) => r.device_id));
    for (const res of this.d.db.prepare('SELECT id FROM device_reservations WHERE lease_id = ?').all(leaseId) as { id: string }[]) {
      for (const id of this.d.leases.devicesOfReservation(res.id)) devices.add(id);
    }
    await Promise.all([...devices].map((id) => this.sweepDevice(id, leaseId)));
  }

  /**
   * Removes from one device every container that must not be there: rows marked Deleting, and
   * engine containers labelled with a lease of ours that is no longer ACTIVE (a crash left them).
   */
  async sweepDevice(deviceId: string, onlyLease?: string): Promise<void> {
    const device = this.d.inventory.find(deviceId);
    if (!device) return;
    const drv = this.d.driver(deviceId);
    try {
      const doomed = this.d.db.prepare(`SELECT * FROM device_containers WHERE device_id = ? AND status = 'Deleting'`).all(deviceId) as ContainerRow[];
      for (const r of doomed) {
        if (onlyLease && r.lease_id !== onlyLease) continue;
        if (r.engine_id) await drv.remove(r.engine_id, true);
        for (const x of await drv.listByLabel(LABEL_CONTAINER, r.id)) await drv.remove(x.id, true);
        this.d.db.prepare('DELETE FROM device_containers WHERE id = ?').run(r.id);
        this.d.publish?.({ id: r.id, status: 'Deleted', project_id: r.project_id });
        this.d.log?.info(`removed container ${r.name} (${r.id}) from device ${device.name}`);
      }
      for (const x of await drv.listByLabel(LABEL_LEASE, onlyLease)) {
        const lease = this.d.leases.findLease(x.labels[LABEL_LEASE]);
        const known = this.d.db.prepare('SELECT status FROM device_containers WHERE id = ?').get(x.labels[LABEL_CONTAINER] ?? '') as { status: string } | undefined;
        // Only leases this daemon knows; a label from another daemon sharing the engine is left alone.
        if (lease && (lease.status !== 'ACTIVE' || !known)) await drv.remove(x.id, true);
      }
    } catch (e) {
      if (e instanceof CloudletError && e.code === 'Unavailable') this.d.health.markDown(deviceId, e.message);
      this.d.log?.warn(`sweeping device ${device.name}: ${describeError(e)} (will retry when it is back)`);
    }
  }

  async sweepAll(): Promise<void> {
    await Promise.all(this.d.inventory.list().map((dv) => this.sweepDevice(dv.id)));
  }

  async idle(): Promise<void> {
    await Promise.allSettled([...this.background]);
  }
}

/** Zun v1 container body (plus where it runs: device and reservation). */
export function containerToZun(c: ContainerRow, deviceName: string, baseUrl: string): Record<string, unknown> {
  const spec = JSON.parse(c.spec) as Spec;
  return {
    uuid: c.id, name: c.name, image: c.image, command: spec.command ?? [], entrypoint: spec.entrypoint ?? [],
    status: c.status, status_reason: c.status_reason, status_detail: null, task_state: c.status === 'Creating' ? 'image_pulling' : null,
    environment: spec.environment, labels: spec.labels, workdir: spec.workdir ?? null,
    ports: Object.keys(spec.exposed_ports).map((p) => Number(p.split('/')[0])), exposed_ports: spec.exposed_ports,
    addresses: spec.network === 'host' ? { host: [{ addr: '127.0.0.1', version: 4, port: null }] } : {},
    host: deviceName, hostname: null, image_driver: 'docker', image_pull_policy: spec.image_pull_policy,
    restart_policy: { Name: 'no', MaximumRetryCount: '0' }, interactive: false, tty: false, auto_remove: false,
    auto_heal: false, privileged: false, runtime: null, memory: null, cpu: null, disk: 0, cpu_policy: 'shared',
    registry_id: null, healthcheck: {}, security_groups: [], user_id: c.user_id, project_id: c.project_id,
    reservation_id: c.reservation_id, lease_id: c.lease_id, device_id: c.device_id, device_name: deviceName,
    created_at: formatLeaseDate(c.created_at), updated_at: formatLeaseDate(c.updated_at),
    links: [{ href: `${baseUrl}/containers/${c.id}`, rel: 'self' }, { href: `${baseUrl}/containers/${c.id}`, rel: 'bookmark' }],
  };
}
