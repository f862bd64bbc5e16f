/**
 * Whether each device's engine answers, from its ping. Reads use a short-lived cache so a lease
 * list does not ping every engine on every call; a background loop keeps the cache warm and tells
 * the owner when an engine comes back (to sweep containers left on it while it was away).
 */
import type { DeviceInventory, DeviceHealthView } from './deviceInventory';
import type { ContainerDriver } from './containerDriver';
import type { Logger } from '../common/log';

interface Entry { view: DeviceHealthView; at: number }

export interface DeviceHealthOptions {
  inventory: DeviceInventory;
  driver: (deviceId: string) => ContainerDriver;
  /** How old a cached answer may be before a read pings again. */
  maxAgeMs?: number;
  /** Background check period; 0 turns the loop off. */
  intervalMs?: number;
  onUp?: (deviceId: string) => void;
  log?: Logger;
}

export class DeviceHealth {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<DeviceHealthView>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DeviceHealthOptions) {}

  /** Cached status only (no I/O): 'unknown' before the first ping. */
  cached(deviceId: string): DeviceHealthView {
    return this.cache.get(deviceId)?.view ?? { status: 'unknown', checked_at: null };
  }

  isDown(deviceId: string): boolean {
    return this.cached(deviceId).status === 'down';
  }

  /** Fresh enough status, pinging when the cache is older than maxAgeMs. */
  async check(deviceId: string, maxAgeMs = this.o.maxAgeMs ?? 2000): Promise<DeviceHealthView> {
    const c = this.cache.get(deviceId);
    if (c && Date.now() - c.at <= maxAgeMs) return c.view;
    let p = this.inflight.get(deviceId);
    if (!p) {
      p = this.ping(deviceId).finally(() => this.inflight.delete(deviceId));
      this.inflight.set(deviceId, p);
    }
    return p;
  }

  /** Records what a failed engine call taught us (no need to wait for the next ping). */
  markDown(deviceId: string, error: string): void {
    this.cache.set(deviceId, { view: { status: 'down', checked_at: new Date().toISOString(), error }, at: Date.now() });
  }

  private async ping(deviceId: string): Promise<DeviceHealthView> {
    const before = this.cache.get(deviceId)?.view.status;
    let view: DeviceHealthView;
    try {
      await this.o.driver(deviceId).ping();
      view = { status: 'up', checked_at: new Date().toISOString() };
    } catch (e) {
      view = { status: 'down', checked_at: new Date().toISOString(), error: (e as Error).message };
    }
    this.cache.set(deviceId, { view, at: Date.now() });
    if (before !== view.status) {
      this.o.log?.[view.status === 'up' ? 'info' : 'warn'](`device ${deviceId} is ${view.status}${view.error ? `: ${view.error}` : ''}`);
      if (view.status === 'up') this.o.onUp?.(deviceId);
    }
    return view;
  }

  async checkAll(): Promise<void> {
    await Promise.all(this.o.inventory.list().map((d) => this.check(d.id, 0)));
  }

  start(): void {
    const every = this.o.intervalMs ?? 10_000;
    if (!every) return;
    const loop = () => {
      this.timer = setTimeout(() => { void this.checkAll().finally(() => { if (this.timer) loop(); }); }, every);
      this.timer.unref?.();
    };
    loop();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  forget(deviceId: string): void {
    this.cache.delete(deviceId);
  }
}
