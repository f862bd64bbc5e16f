/**
 * Wires the devices feature together for one daemon: inventory, health, scheduler, clock,
 * lifecycle and containers over the daemon's database. The reservation, container and
 * inventory API modules share one instance.
 */
import type { DaemonContext } from '../cloudlet/context';
import { DeviceInventory, type Device } from './deviceInventory';
import { DeviceHealth } from './deviceHealth';
import { LeaseScheduler } from './leaseScheduler';
import { LeaseStore, type DownDevices, type LeaseDetail } from './leaseStore';
import { LeaseLifecycle } from './leaseLifecycle';
import { LeaseClock } from './leaseClock';
import { ContainerService } from './containerService';
import { ContainerDriver } from './containerDriver';
import { envNumber } from '../common/env';

export interface DevicesOptions {
  /** Background engine ping period (ms); CLOUDLET_DEVICE_HEALTH_INTERVAL_MS, default 10 s. */
  healthIntervalMs?: number;
}

export class DevicesService {
  readonly inventory: DeviceInventory;
  readonly leases: LeaseStore;
  readonly health: DeviceHealth;
  readonly scheduler: LeaseScheduler;
  readonly lifecycle: LeaseLifecycle;
  readonly clock: LeaseClock;
  readonly containers: ContainerService;
  private readonly drivers = new Map<string, { endpoint: string; driver: ContainerDriver }>();
  private started: Promise<void> | undefined;

  constructor(readonly ctx: DaemonContext, opts: DevicesOptions = {}) {
    const db = ctx.db;
    this.inventory = new DeviceInventory(db);
    this.leases = new LeaseStore(db);
    this.health = new DeviceHealth({
      inventory: this.inventory, driver: (id) => this.driver(id), log: ctx.log,
      intervalMs: opts.healthIntervalMs ?? envNumber('CLOUDLET_DEVICE_HEALTH_INTERVAL_MS', 10_000, 1),
      // An engine that comes back gets the containers of ended leases removed.
      onUp: (id) => { void this.containers.sweepDevice(id); },
    });
    this.scheduler = new LeaseScheduler(db, this.inventory, { isDown: (id) => this.health.isDown(id) });
    this.containers = new ContainerService({
      db, inventory: this.inventory, leases: this.leases, health: this.health, driver: (id) => this.driver(id),
      publish: (d) => ctx.events.publish('containers', d), log: ctx.log,
    });
    this.lifecycle = new LeaseLifecycle(db, this.containers, (d) => {
      const l = this.leases.findLease(String(d.id));
      ctx.events.publish('leases', { ...d, project_id: l?.project_id });
    }, Date.now, ctx.log);
    this.clock = new LeaseClock({ db, handle: (e) => this.lifecycle.handle(e), log: ctx.log });
  }

  /** The dockerode driver of a device (rebuilt when its endpoint changes). */
  driver(deviceId: string): ContainerDriver {
    const d = this.inventory.get(deviceId);
    const cur = this.drivers.get(d.id);
    if (cur && cur.endpoint === d.engineEndpoint) return cur.driver;
    const driver = new ContainerDriver(d.engineEndpoint, d.name);
    this.drivers.set(d.id, { endpoint: d.engineEndpoint, driver });
    return driver;
  }

  /** Recovery after a (re)start: learn which engines answer, catch up on due lease events, sweep. */
  start(): Promise<void> {
    return this.started ??= (async () => {
      await this.health.checkAll();
      await this.clock.start();
      await this.containers.sweepAll();
      this.health.start();
    })();
  }

  async stop(): Promise<void> {
    this.health.stop();
    await this.clock.stop();
    await this.containers.idle();
  }

  /** The lease's devices whose engine does not answer now (for `degraded`). */
  async downDevices(detail: LeaseDetail): Promise<DownDevices> {
    if (detail.lease.status === 'TERMINATED' || detail.lease.status === 'ERROR') return [];
    const ids = [...new Set(detail.reservations.flatMap((r) => r.deviceIds))];
    const out: DownDevices = [];
    await Promise.all(ids.map(async (id) => {
      const d: Device | undefined = this.inventory.find(id);
      if (!d) return;
      const h = await this.health.check(id);
      if (h.status === 'down') out.push({ id, name: d.name, error: h.error });
    }));
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** One DevicesService per daemon context, shared by the three modules mounted on it. */
const services = new WeakMap<DaemonContext, DevicesService>();

export function devicesFor(ctx: DaemonContext): DevicesService {
  let s = services.get(ctx);
  if (!s) {
    s = new DevicesService(ctx);
    services.set(ctx, s);
  }
  return s;
}
