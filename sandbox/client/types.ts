/** Shapes the daemon (and OpenStack) send, as far as the client reads them. */
import type { ProgressEvent } from '../common/progress';
import type { ErrorCode, Fault } from '../common/errors';

export interface CatalogEndpoint { id?: string; interface: string; region?: string; region_id?: string; url: string }
export interface CatalogEntry { id?: string; type: string; name: string; endpoints: CatalogEndpoint[] }

export type ServerStatus = 'BUILD' | 'ACTIVE' | 'PAUSED' | 'SHUTOFF' | 'ERROR' | 'DELETED';

export interface Link { rel: string; href: string }

/** One of a server's addresses, as Nova lists them. */
export interface ServerAddress { version: 4 | 6; addr: string; 'OS-EXT-IPS:type': 'fixed' | 'floating'; 'OS-EXT-IPS-MAC:mac_addr': string }

/** Nova's fault of a server in ERROR; `cloudlet_error` is the error's own code and hint. */
export interface ServerFault { code: number; message: string; created: string; cloudlet_error?: { code: ErrorCode; hint?: string } }

/**
 * Nova v2.1 server (GET /servers/{id}, /servers/detail) plus the daemon's OS-EXT-CLOUDLET:* fields.
 * The daemon builds exactly this (sandbox/cloudlet/servers/serverView.ts); clients read it.
 */
export interface Server {
  id: string;
  name: string;
  status: ServerStatus;
  tenant_id: string;
  user_id: string;
  metadata: Record<string, string>;
  hostId: string;
  image: { id: string; links: Link[] } | '';
  flavor: { id: string; links: Link[] };
  created: string | null;
  updated: string | null;
  /** ACTIVE/PAUSED/SHUTOFF servers: one network named for the cloudlet, the address its ports are forwarded on. */
  addresses: Record<string, ServerAddress[]>;
  accessIPv4: string;
  accessIPv6: string;
  links: Link[];
  'OS-DCF:diskConfig': 'MANUAL';
  progress: number;
  'OS-EXT-AZ:availability_zone': string;
  config_drive: string;
  key_name: null;
  'OS-SRV-USG:launched_at': string | null;
  'OS-SRV-USG:terminated_at': null;
  'OS-EXT-STS:task_state': string | null;
  'OS-EXT-STS:vm_state': string;
  'OS-EXT-STS:power_state': number;
  security_groups: Array<{ name: string }>;
  'os-extended-volumes:volumes_attached': never[];
  fault?: ServerFault;
  /** The job building or moving this server (synthesis, handoff, overlay), when there is one. */
  'OS-EXT-CLOUDLET:job_id': string | null;
  /** Base VM this server runs on. */
  'OS-EXT-CLOUDLET:base_id': string | null;
  /** Guest port -> "host:port" on the cloudlet where it is forwarded. */
  'OS-EXT-CLOUDLET:ports': Record<string, string>;
}

/** GET /servers: a server in short. */
export interface ServerSummary { id: string; name: string; links: Link[] }

/** POST /servers answer (202): Nova's reservation plus the job that builds the server. */
export interface ServerCreated {
  id: string;
  links: Link[];
  adminPass: string;
  'OS-DCF:diskConfig': 'MANUAL';
  security_groups: Array<{ name: string }>;
  'OS-EXT-CLOUDLET:job_id': string | null;
  /** Present for a synthesis (metadata.overlay_url), as OpenStack++ answers it. */
  synthesis?: { return: 'started'; job_id: string | null };
}

export interface Flavor {
  id: string;
  name: string;
  ram: number;
  vcpus: number;
  disk: number;
  'OS-FLV-EXT-DATA:ephemeral': number;
  'OS-FLV-DISABLED:disabled': boolean;
  'os-flavor-access:is_public': boolean;
  swap: string;
  rxtx_factor: number;
  links: Link[];
}

/** The Glance properties this toolkit sets and reads (custom properties are strings, at the top level). */
export interface CloudletImageProperties {
  /** 'True' on every cloudlet image (OpenStack++). */
  is_cloudlet?: string;
  cloudlet_type?: 'cloudlet_base_disk' | 'cloudlet_base_memory' | 'cloudlet_base_disk_hash' | 'cloudlet_base_memory_hash' | 'cloudlet_overlay' | string;
  /** The base ID a base holds or an overlay needs. */
  base_sha256_uuid?: string;
  /** An overlay's ID (SHA-256 of its manifest). */
  overlay_id?: string;
  /** oci://HOST/REPO:TAG an overlay was last published as, and the same pinned by digest. */
  cloudlet_published_ref?: string;
  cloudlet_published_digest?: string;
}

/**
 * Glance v2 image (GET /v2/images/{id}); custom properties are top-level, as Glance puts them.
 * Other custom properties a client set travel too; these are the ones this toolkit knows.
 */
export interface Image extends CloudletImageProperties {
  id: string;
  name: string;
  status: 'queued' | 'saving' | 'active' | 'killed' | 'deleted' | 'importing';
  visibility: 'public' | 'private' | 'shared' | 'community';
  protected: boolean;
  os_hidden: boolean;
  size: number | null;
  virtual_size: null;
  checksum: string | null;
  os_hash_algo: 'sha512' | null;
  os_hash_value: string | null;
  disk_format: string | null;
  container_format: string | null;
  min_disk: number;
  min_ram: number;
  owner: string;
  created_at: string;
  updated_at: string;
  tags: string[];
  self: string;
  file: string;
  schema: string;
}

/** GET /v2/images: one page. */
export interface ImagePage { images: Image[]; first: string; schema: string; next?: string }

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
  /** Source QEMU's STOP -> the source got the destination's "running" (finish's answer). */
  downtime_ms: number;
  /**
   * The guest's pause as QEMU's event clocks see it: the source QEMU's STOP event and the destination
   * QEMU's RESUME event (ms since the epoch), and the difference: comparable only when both hosts'
   * clocks agree (one host, or synchronized clocks). Older destinations send no RESUME time.
   */
  stopped_at_ms?: number;
  resumed_at_ms?: number;
  stop_to_resume_ms?: number;
  bytes_sent: number;
  rounds: number;
  round_bytes: number[];
  /** RAM pages and disk chunks sent per round (older sources do not send them). */
  round_pages?: number[];
  round_disk_chunks?: number[];
  /** How written pages were found: QEMU's migration as dirty log, or the full RAM compare (fallback, with its reason). */
  tracking?: 'qemu-migration' | 'full-compare';
  tracking_fallback?: string;
  /** How the paused disk scan found written chunks: QEMU's block dirty bitmap, or reading the whole qcow2 layer (fallback, with its reason). */
  disk_tracking?: 'qemu-dirty-bitmap' | 'layer-scan';
  disk_tracking_fallback?: string;
  /** Round 0: the overlay the VM was made from, as stored (its ID), or a compare against the base (with the reason). */
  round0?: 'launch-overlay' | 'compare';
  round0_overlay_id?: string;
  round0_compare_reason?: string;
  /** Only with CLOUDLET_HANDOFF_VERIFY_RAM=1 (tests): the paused source RAM and the destination's before the load. */
  ram_sha256?: { source: string; destination: string };
  phases_ms: Record<string, number>;
}

export type { ProgressEvent, ErrorCode, Fault };

/** POST /sandbox/v1/bases body (sandbox/cloudlet/api/baseCreate.ts): what a new base VM is made from. */
export interface CreateBaseRequest {
  name: string;
  source: 'test-guest' | 'debian' | 'image';
  /** debian: the suite (default bookworm) and extra packages */
  suite?: string;
  packages?: string[];
  /** debian and image: disk size in bytes (whole MiB) */
  disk_bytes?: number;
  /** image: absolute path of a qcow2, raw or vmdk file on the cloudlet's host; cloud-init's host name, user and SSH key line */
  image?: string;
  hostname?: string;
  user?: string;
  ssh_key?: string;
  ram_mib?: number;
  vcpus?: number;
  cpu_model?: string;
  ready_marker?: string;
  no_agent?: boolean;
  timeout_s?: number;
}

/** The result of a finished base-create job. */
export interface CreateBaseResult { base_id: string; name: string; image_id: string; ready_after_ms?: number; origin?: Record<string, unknown> }
