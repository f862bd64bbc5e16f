/** Shapes the daemon (and OpenStack) send, as far as the client reads them. */
import type { ProgressEvent } from '../common/progress';
import type { ErrorCode, Fault } from '../common/errors';

export interface CatalogEndpoint { id?: string; interface: string; region?: string; region_id?: string; url: string }
export interface CatalogEntry { id?: string; type: string; name: string; endpoints: CatalogEndpoint[] }

export type ServerStatus = 'BUILD' | 'ACTIVE' | 'PAUSED' | 'SHUTOFF' | 'ERROR' | 'DELETED' | string;

/** Nova v2.1 server plus the daemon's OS-EXT-CLOUDLET:* fields. */
export interface Server {
  id: string;
  name: string;
  status: ServerStatus;
  tenant_id: string;
  user_id: string;
  metadata: Record<string, string>;
  image: { id: string } | '';
  flavor: { id: string };
  created: string;
  updated: string;
  progress?: number;
  /** Nova's fault; `cloudlet_error` is the error's own code and hint. */
  fault?: { code: number; message: string; created: string; cloudlet_error?: { code: ErrorCode; hint?: string } };
  'OS-EXT-STS:vm_state'?: string;
  'OS-EXT-STS:task_state'?: string | null;
  'OS-EXT-STS:power_state'?: number;
  /** The job building or moving this server (synthesis, handoff, overlay), when there is one. */
  'OS-EXT-CLOUDLET:job_id'?: string | null;
  /** Base VM this server runs on. */
  'OS-EXT-CLOUDLET:base_id'?: string;
  /** Guest port -> "host:port" on the cloudlet where it is forwarded. */
  'OS-EXT-CLOUDLET:ports'?: Record<string, string>;
  [k: string]: unknown;
}

export interface Flavor { id: string; name: string; ram: number; vcpus: number; disk: number; [k: string]: unknown }

/** Glance v2 image; cloudlet properties are top-level, as Glance puts custom properties. */
export interface Image {
  id: string;
  name: string;
  status: 'queued' | 'saving' | 'active' | 'killed' | 'deleted' | 'pending_delete' | 'importing' | string;
  visibility: string;
  size: number | null;
  checksum: string | null;
  disk_format: string | null;
  container_format: string | null;
  owner: string;
  created_at: string;
  updated_at: string;
  is_cloudlet?: string;
  cloudlet_type?: string;
  base_sha256_uuid?: string;
  [k: string]: unknown;
}

export type JobStatus = 'RUNNING' | 'DONE' | 'ERROR' | 'CANCELLED';

export interface Job {
  id: string;
  kind: string;
  resource_id: string | null;
  project_id: string;
  status: JobStatus;
  phase: string | null;
  message: string | null;
  done: number | null;
  total: number | null;
  /** What went wrong, for people: the message and, on a line after it, the hint. */
  error: string | null;
  /** The same as the error it was: code, message, hint (rebuild it with errorOfFault). */
  fault: Fault | null;
  result: unknown;
  created_at: string;
  updated_at: string;
}

export interface JobEnd { job: string; status: JobStatus; error?: string; fault?: Fault; result?: unknown }

export interface ChangeEvent { topic: 'servers' | 'images' | 'leases' | 'containers' | 'devices' | 'jobs'; data: Record<string, unknown>; at: number }

/** What one handoff reports (the job's result). */
export interface HandoffReport {
  server_id: string;
  destination_server_id: string;
  destination: string;
  total_ms: number;
  downtime_ms: number;
  bytes_sent: number;
  rounds: number;
  round_bytes: number[];
  phases_ms: Record<string, number>;
}

export type { ProgressEvent, ErrorCode, Fault };
