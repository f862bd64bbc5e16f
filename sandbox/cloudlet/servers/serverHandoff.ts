/**
 * What the server lifecycle needs from a handoff service: the interface sandbox/handoff's
 * createHandoffService implements (declared here, below it, so the daemon's core imports no handoff code).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext } from '../context';
import type { ServerRow } from '../serverStore';

/** destFingerprint: the destination's certificate, pinned by the caller (else the daemon's peer trust verifies it). */
export interface HandoffRequest { handoffUrl: string; destToken: string; destVmName: string; destFingerprint?: string }

/** What the compute API mounts: the source side (start, recover) and the destination's routes. */
export interface HandoffService {
  /** Starts moving `server` to another cloudlet; returns the job id. */
  start(a: AuthContext, server: ServerRow, req: HandoffRequest): string;
  /** Routes of the receiving side, under the compute prefix. */
  routes(app: FastifyInstance, base: (req: FastifyRequest) => string): void;
  /**
   * Restart: a server whose handoff was cut by the stop (task_state migrating); `paused`: its VM is
   * paused here. Returns true if it asks the destination in the background (the server stays
   * PAUSED, task_state migrating, until the answer); false if the caller resumes the VM as before.
   */
  recover?(server: ServerRow, paused: boolean): boolean;
  stop(): Promise<void>;
}
