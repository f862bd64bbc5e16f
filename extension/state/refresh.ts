/**
 * Event-driven, debounced, visibility-aware refresh. The daemon's event stream calls `request()`;
 * a burst of events becomes one refresh after `delayMs` of quiet (bounded by `maxWaitMs`); while the
 * view is hidden nothing runs and the view is marked stale, then refreshed once when shown again.
 * Timers are injected so unit tests drive it without waiting.
 */
export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
  now(): number;
}

export const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

export class RefreshScheduler {
  private timer: unknown;
  private firstRequestAt: number | undefined;
  private stale = false;
  private visible = true;
  private disposed = false;
  refreshCount = 0;

  constructor(private readonly fire: () => void, private readonly delayMs = 300, private readonly maxWaitMs = 2000,
              private readonly timers: Timers = realTimers) {}

  /** Something changed: refresh soon, if visible. */
  request(): void {
    if (this.disposed) return;
    if (!this.visible) { this.stale = true; return; }
    const now = this.timers.now();
    this.firstRequestAt ??= now;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    const wait = Math.max(0, Math.min(this.delayMs, this.firstRequestAt + this.maxWaitMs - now));
    this.timer = this.timers.set(() => this.run(), wait);
  }

  /** Refresh at once (user asked). */
  now(): void {
    if (this.disposed) return;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.run();
  }

  setVisible(visible: boolean): void {
    this.visible = visible;
    if (!visible && this.timer !== undefined) {
      this.timers.clear(this.timer);
      this.timer = undefined;
      this.firstRequestAt = undefined;
      this.stale = true;
    }
    if (visible && this.stale) this.now();
  }

  get isVisible(): boolean { return this.visible; }
  get isStale(): boolean { return this.stale; }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== undefined) this.timers.clear(this.timer);
  }

  private run(): void {
    this.timer = undefined;
    this.firstRequestAt = undefined;
    this.stale = false;
    this.refreshCount++;
    this.fire();
  }
}

/** Which views an event of the daemon's stream concerns. */
export function viewsForTopic(topic: string, cloudlet: 'local' | 'remote'): Array<'sandbox' | 'cloudlets' | 'overlays' | 'devices'> {
  switch (topic) {
    case 'servers': return cloudlet === 'local' ? ['sandbox'] : ['cloudlets'];
    case 'images': return cloudlet === 'local' ? ['sandbox', 'overlays'] : ['cloudlets'];
    case 'overlays': return ['overlays'];
    case 'jobs': return cloudlet === 'local' ? ['sandbox', 'overlays'] : ['cloudlets'];
    case 'leases': case 'containers': case 'devices': return ['devices'];
    default: return [];
  }
}
