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
