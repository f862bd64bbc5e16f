/**
 * The contract between the daemon core (server, auth, database, jobs) and the API modules mounted
 * on it (compute, image, reservation, container, inventory). Each module is one file under
 * sandbox/cloudlet/api/ exporting an `ApiModule`. The core owns this file; change it with care.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type BetterSqlite3 from 'better-sqlite3';
import type { Logger } from '../common/log';
import type { ProgressEvent } from '../common/progress';
import type { TlsTrust } from '../client/transport';
import type { Job, JobStatus } from '../client/types';
import type { Fault } from '../common/errors';

/** Who is calling, from a validated X-Auth-Token. */
export interface AuthContext {
  userId: string;
  userName: string;
  projectId: string;
  projectName: string;
  roles: string[];          // e.g. ['member'] or ['admin', 'member']
  isAdmin: boolean;
  expiresAt: string;        // ISO 8601
  token: string;
}

/** Who validates callers' tokens (identityProvider.ts makes one; requestAuth.ts asks it). */
export interface IdentityProvider {
  readonly kind: 'embedded' | 'keystone';
  /**
   * The caller holding `token`; undefined when the token is unknown, expired or revoked.
   * Throws Forbidden when the token is valid but gives no role on this cloudlet, Unavailable when
   * the identity service cannot be asked.
   */
  validate(token: string): Promise<AuthContext | undefined>;
  /** The Keystone v3 URL clients get tokens from, when it is not this daemon's own /identity/v3. */
  readonly externalAuthUrl?: string;
  close?(): void;
}

/** A background job (synthesis, handoff, overlay build, image import ...) with an SSE stream. */
export interface JobHandle {
  id: string;
  kind: string;
  resourceId?: string;     // server / image / lease id it concerns
  progress(e: ProgressEvent): void;
  signal: AbortSignal;
}

/** What a job stream carries: progress events, then one terminal event. */
export type JobStreamEvent =
  | { type: 'progress'; job: string; event: ProgressEvent }
  | { type: 'end'; job: string; status: JobStatus; error?: string; fault?: Fault; result?: unknown };

/** The daemon's jobs (sandbox/cloudlet/jobs.ts implements it): what modules may do with them. */
export interface JobRegistry {
  /** Runs `work` in the background, persisted in the jobs table; returns at once with the job id. */
  start(kind: string, projectId: string, resourceId: string | undefined,
        work: (job: JobHandle) => Promise<unknown>): string;
  get(id: string): Job | undefined;
  /** A project's jobs (all with undefined), newest first. */
  list(projectId: string | undefined, limit?: number): Job[];
  /** Asks a running job to stop (its signal aborts); false if it is not running here. */
  cancel(id: string): boolean;
  /** Resolves when the job has finished (at once if it is not running in this process). */
  wait(id: string): Promise<Job | undefined>;
  /** Subscribe to one job's stream; returns the unsubscribe function. */
  subscribe(id: string, fn: (e: JobStreamEvent) => void): () => void;
  isRunning(id: string): boolean;
}

/** Change notifications for event-driven refresh (the extension's trees, the CLI's --watch). */
export interface EventBus {
  publish(topic: 'servers' | 'images' | 'leases' | 'containers' | 'devices' | 'jobs', data: Record<string, unknown>): void;
}

export interface DaemonContext {
  /** SQLite (WAL). Every module creates its own tables in `migrate`. */
  db: BetterSqlite3.Database;
  /** The daemon's --data folder: the store root for bases, servers' VMs, overlays, tmp. */
  dataDir: string;
  /** Base URL of this daemon as others reach it, e.g. http://127.0.0.2:8774 */
  publicUrl: string;
  /** The catalog URL of a service type: what links and discovery documents name (never the Host header). */
  serviceUrl(type: string): string;
  /** How this daemon verifies other cloudlets it calls (handoff destinations, overlay_url): system store, --peer-ca, itself. */
  peerTrust: TlsTrust;
  log: Logger;
  jobs: JobRegistry;
  events: EventBus;
  /** The caller of a request; throws the 401 error when there is no valid token. */
  auth(req: FastifyRequest): AuthContext;
  /** Same, and 403 unless the caller has the admin role. */
  requireAdmin(req: FastifyRequest): AuthContext;
  /** Whether a caller's token is still good now (not expired or revoked): long streams ask again. */
  stillValid(caller: AuthContext): Promise<boolean>;
}

export interface ApiModule {
  /** Service type in the Keystone catalog: 'compute', 'image', 'reservation', 'container', 'inventory'. */
  serviceType: string;
  /** Path prefix this module serves under, e.g. '/compute/v2.1'. The catalog advertises publicUrl + prefix. */
  prefix: string;
  migrate(db: BetterSqlite3.Database): void;
  /** Registers routes on a Fastify instance already scoped to `prefix`. */
  routes(app: FastifyInstance, ctx: DaemonContext): void;
  /**
   * Routes at the service's root, the prefix's parent (`/compute` for `/compute/v2.1`): the version
   * list clients read before they pick a version. Same error bodies as `routes`.
   */
  rootRoutes?(app: FastifyInstance, ctx: DaemonContext): void;
  /** After routes: start timers (lease events), adopt processes, reconcile state after a restart. */
  start?(ctx: DaemonContext): Promise<void>;
  stop?(): Promise<void>;
}
