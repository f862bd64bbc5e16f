/**
 * One change-event stream per cloudlet (the local daemon and every configured one); each event goes
 * to `onEvent`. A stream that ends drops its session (a token expired or the daemon restarted) and is
 * reconnected with backoff: 2 s doubling up to 60 s, reset by the next event. A reconnected stream
 * calls `onReconnected`: what changed while it was down sent no events.
 */
import type { ChangeEvent, CloudletSession } from './api';
import { classifyError } from './state/errors';

export interface WatchedCloudlets {
  /** Every cloudlet to watch, the local daemon included. */
  names(): string[];
  session(name: string): Promise<CloudletSession>;
  forget(name: string): void;
}

export class EventWatcher {
  private readonly watchers = new Map<string, () => void>();

  constructor(private readonly cloudlets: WatchedCloudlets,
              private readonly onEvent: (cloudlet: string, e: ChangeEvent) => void,
              private readonly warn: (message: string) => void,
              private readonly onReconnected: (cloudlet: string) => void = () => {}) {}

  /** (Re)connects the event streams of the local daemon and every configured cloudlet. */
  watchAll(): void {
    const names = this.cloudlets.names();
    for (const [n, stop] of this.watchers) if (!names.includes(n)) { stop(); this.watchers.delete(n); }
    for (const n of names) {
      this.watchers.get(n)?.();
      this.watchers.delete(n);
      this.watch(n, 0);
    }
  }

  private watch(name: string, attempt: number): void {
    let stopped = false;
    let stopStream: (() => void) | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => { stopped = true; stopStream?.(); if (timer) clearTimeout(timer); };
    this.watchers.set(name, stop);
    const retry = () => {
      if (stopped) return;
      const delay = Math.min(60000, 2000 * 2 ** Math.min(attempt, 5));
      timer = setTimeout(() => { if (!stopped && this.watchers.get(name) === stop) this.watch(name, attempt + 1); }, delay);
    };
    this.cloudlets.session(name).then((s) => {
      if (stopped) return;
      if (attempt > 0) this.onReconnected(name);
      stopStream = s.watchEvents((e) => {
        attempt = 0;
        this.onEvent(name, e);
      }, (err) => {
        this.warn(`event stream of ${name} ended: ${classifyError(err).message}`);
        this.cloudlets.forget(name);
        retry();
      });
    }, () => retry());
  }

  dispose(): void {
    for (const stop of this.watchers.values()) stop();
    this.watchers.clear();
  }
}
