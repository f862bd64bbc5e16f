/** In-process change notifications, fanned out to the general SSE stream (/cloudlet/v1/events). */
import { EventEmitter } from 'events';
import type { EventBus } from './context';

export type Topic = Parameters<EventBus['publish']>[0];
export interface BusEvent { topic: Topic; data: Record<string, unknown>; at: number }

export class LocalEventBus implements EventBus {
  private emitter = new EventEmitter();
  constructor() { this.emitter.setMaxListeners(0); }
  publish(topic: Topic, data: Record<string, unknown>): void {
    this.emitter.emit('event', { topic, data, at: Date.now() } satisfies BusEvent);
  }
  subscribe(fn: (e: BusEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
