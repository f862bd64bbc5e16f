/**
 * What the extension needs from a cloudlet, as an interface. The real implementation
 * (extension/clientAdapter.ts) wraps sandbox/client, the only way extension/ reaches a daemon;
 * unit tests give a fake. Nothing here imports vscode.
 */
import type { CreateBaseRequest, Fault, ProgressEvent } from '../sandbox/client/types';
import type { OverlayComposition } from './protocol';
import type { DevicesApi } from '../sandbox/client/devices';
import type { PublishRequest } from '../sandbox/client/publish';

/** An application credential (Keystone's), named by its ID, or by its name and its owner (`username`). */
export interface ApplicationCredentialRef {
  id?: string;
  name?: string;
}

/**
 * A login: a user's password in a project, or (with `applicationCredential`) an application
 * credential whose secret is `password` (the credential fixes the project; `username` is its owner
 * when it is named by name).
 */
export interface Credentials {
  username: string;
  password: string;
  project: string;
  applicationCredential?: ApplicationCredentialRef;
}

export interface ImageInfo {
  id: string;
  name: string;
  status: string;
  size?: number;
  /** Glance property cloudlet_type: cloudlet_base_disk, cloudlet_overlay ... */
  cloudletType?: string;
  /** The base ID (base_sha256_uuid) a base or overlay belongs to. */
  baseId?: string;
}

export interface ServerInfo {
  id: string;
  name: string;
  /** Nova status: BUILD, ACTIVE, PAUSED, SHUTOFF, MIGRATING, ERROR ... */
  status: string;
  imageId?: string;
  baseId?: string;
  overlayUrl?: string;
  /** Guest ports forwarded to loopback ("8080/tcp" -> "127.0.0.1:40123"). */
  ports?: Record<string, string>;
  /** The running job (synthesis, handoff, overlay) if any. */
  jobId?: string;
  created?: string;
}

/** How a job ended; a failed one carries the daemon's fault (code, message, hint). */
export type JobEnd = { status: 'DONE' | 'ERROR' | 'CANCELLED'; error?: string; fault?: Fault; result?: unknown };

export interface ChangeEvent {
  topic: string;
  data: Record<string, unknown>;
}

export interface ConsoleStream {
  write(data: string): void;
  onData(fn: (text: string) => void): void;
  onClose(fn: (reason?: string) => void): void;
  close(): void;
}

export interface OverlayInfo {
  id: string;
  name: string;
  baseId: string;
  size: number;
  /** Where the overlay can be fetched from for synthesis (a URL or oci:// reference). */
  url?: string;
  composition?: OverlayComposition;
  createdAt?: string;
  /** oci://HOST/REPO:TAG it was last published as (Glance property cloudlet_published_ref). */
  publishedRef?: string;
  /** The same, pinned by digest: oci://HOST/REPO@sha256:... */
  publishedDigest?: string;
}

export interface HandoffResult {
  totalMs?: number;
  downtimeMs?: number;
  bytesSent?: number;
  destServerId?: string;
  /** How the source found written pages ('qemu-migration' or 'full-compare'), and why it fell back. */
  tracking?: string;
  trackingFallback?: string;
  /** RAM pages sent per round, the last one while the VM was paused. */
  roundPages?: number[];
}

/** One signed-in connection to a cloudlet daemon. Every call is logged by the implementation. */
export interface CloudletSession {
  readonly endpoint: string;
  /** The compute endpoint other cloudlets use as handoff_url, a token for it, and its pinned certificate if any. */
  handoffTarget(): Promise<{ url: string; token: string; fingerprint?: string }>;
  /** Creates a base VM on the daemon's host as a job (cloudlet-sandbox POST /bases; admin). */
  createBase?(req: CreateBaseRequest): Promise<{ jobId: string }>;
  /** Whether this login has the admin role (adding a base VM to a cloudlet needs it). */
  isAdmin?(): boolean;
  /** A fleet login (one Keystone): the regions of its catalog, each a cloudlet. One region or none: []. */
  regions?(): string[];
  /** The same login, in one region of the fleet (no new login: the user's own token). */
  inRegion?(region: string): CloudletSession;
  /** The compute endpoint this session's servers run behind (a fleet region's host, not the Keystone's). */
  computeEndpoint?(): string;
  listImages(signal?: AbortSignal): Promise<ImageInfo[]>;
  listServers(signal?: AbortSignal): Promise<ServerInfo[]>;
  getServer(id: string, signal?: AbortSignal): Promise<ServerInfo>;
  /** Resume a base VM (server create from the base image). Returns the new server and its job. */
  resumeBase(imageId: string, name: string): Promise<{ server: ServerInfo; jobId?: string }>;
  /**
   * VM synthesis: server create with metadata.overlay_url. For an oci:// URL the pull is tried
   * anonymously first; only if the registry refused it is the user's login sent, on one retry:
   * `registryLogin` (secret storage), else the user's Docker login (createSynthesisServer, 'auto').
   */
  synthesize(overlayUrl: string, name: string, registryLogin?: () => Promise<{ username: string; password: string } | undefined>): Promise<{ server: ServerInfo; jobId?: string }>;
  handoff(serverId: string, dest: { url: string; token: string; fingerprint?: string }, destName: string): Promise<{ jobId?: string }>;
  /** `cloudlet-overlay-finish`: make an overlay of this (paused) VM. */
  createOverlay(serverId: string, name: string): Promise<{ jobId?: string; overlayId?: string }>;
  pause(serverId: string): Promise<void>;
  unpause(serverId: string): Promise<void>;
  stop(serverId: string): Promise<void>;
  deleteServer(serverId: string): Promise<void>;
  deleteImage(imageId: string): Promise<void>;
  importBase(file: string, name: string, signal?: AbortSignal, onProgress?: (e: ProgressEvent) => void): Promise<ImageInfo>;
  exportBase(imageId: string, file: string, signal?: AbortSignal, onProgress?: (e: ProgressEvent) => void): Promise<void>;
  /** Overlays the daemon holds (built locally). */
  listOverlays(signal?: AbortSignal): Promise<OverlayInfo[]>;
  getOverlay(id: string): Promise<OverlayInfo>;
  /** Follows a job until it ends; progress events as they come. Cancels the job when `signal` fires. */
  watchJob(jobId: string, onProgress: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<JobEnd>;
  cancelJob(jobId: string): Promise<void>;
  /** The daemon's change stream (servers, images, jobs ...). Returns a stop function. */
  watchEvents(onEvent: (e: ChangeEvent) => void, onError: (e: unknown) => void): () => void;
  /** The serial console of a server. */
  openConsole(serverId: string): Promise<ConsoleStream>;
  /** Copies an overlay image to another cloudlet's image service; returns the URL it synthesizes from there. */
  copyOverlayTo?(overlayId: string, dest: CloudletSession, onProgress?: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<string>;
  /** Build an overlay from a workspace folder with cloudlet.yaml, as one job. */
  buildFromWorkspace(folder: string, name: string): Promise<{ jobId: string }>;
  /** Publish an overlay image of this daemon to an OCI registry, as a job (cloudlet-sandbox service). */
  publishOverlay?(imageId: string, req: PublishRequest): Promise<{ jobId: string }>;
  /** Devices, leases and containers, when the cloudlet offers the reservation service. */
  devices?(): DevicesApi | undefined;
}

/** One API call, as the output channel shows it. No headers, no bodies: never a secret. */
export interface ApiCallRecord {
  method: string;
  url: string;
  status: number | 'error';
  ms: number;
  error?: string;
}
