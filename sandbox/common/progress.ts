/**
 * Progress of a long job, the same shape everywhere: the CLI's progress bars, the daemon's
 * server-sent events and the extension's panels all read these.
 */
export interface ProgressEvent {
  phase: string;          // e.g. 'resume', 'scan-ram', 'compress', 'upload', 'handoff-round-2'
  message?: string;
  done?: number;          // bytes (or items) done in this phase
  total?: number;         // bytes (or items) in this phase, when known
  at?: number;            // ms since epoch
}

export type ProgressSink = (e: ProgressEvent) => void;
export const noProgress: ProgressSink = () => {};

/** Throws the standard Cancelled error when the signal fired; call between units of work. */
export function throwIfCancelled(signal?: AbortSignal): void {
  if (signal?.aborted) {
    // Lazy import keeps this file dependency-free for the webview protocol.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { CloudletError } = require('./errors') as typeof import('./errors');
    throw new CloudletError('Cancelled', 'cancelled');
  }
}
