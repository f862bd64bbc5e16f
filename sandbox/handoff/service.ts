/** The handoff service the compute API mounts (source side: start; destination side: routes). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext } from '../cloudlet/context';
import type { ServerRow } from '../cloudlet/serverStore';

export interface HandoffRequest { handoffUrl: string; destToken: string; destVmName: string }

export interface HandoffService {
  /** Starts moving `server` to another cloudlet; returns the job id. */
  start(a: AuthContext, server: ServerRow, req: HandoffRequest): string;
  /** Routes of the receiving side, under the compute prefix. */
  routes(app: FastifyInstance, base: (req: FastifyRequest) => string): void;
  stop(): Promise<void>;
}
