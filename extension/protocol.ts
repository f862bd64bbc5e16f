/**
 * The one file that types every message between the extension host and the panels' webviews, in
 * both directions. webview/ imports it too (webview/tsconfig.json includes it), so it must stay free
 * of runtime imports: types and pure constants only.
 */
import type { ProgressEvent } from '../sandbox/client/types';

export type PanelKind = 'overlay' | 'server' | 'reservations';

// ---------------------------------------------------------------------------------------------
// State shown by the panels (computed on the extension side by extension/state/*, sent whole).

/** One slice of "what the overlay is made of". */
export interface CompositionPart {
  /** Where the chunks come from: guest RAM, the disk, or the device state stream. */
  area: 'ram' | 'disk' | 'state';
  /** How they are encoded: zero, copy of a base RAM page / disk chunk, copy of an earlier chunk, raw or delta. */
  encoding: 'zero' | 'base-ram' | 'base-disk' | 'self' | 'raw' | 'delta' | 'state';
  chunks: number;
  /** Bytes of guest data these chunks stand for (4 KiB each, except the device state). */
  bytes: number;
}

export interface OverlayComposition {
  overlayId: string;
  baseId: string;
  /** Size of the overlay file / all segments compressed. */
  compressedBytes: number;
  /** Sum of parts' bytes (uncompressed changed data). */
  rawBytes: number;
  segments: number;
  parts: CompositionPart[];
}

export type BuildStatus = 'idle' | 'running' | 'done' | 'failed' | 'cancelled';

export interface PhaseState {
  name: string;
  startedAt: number;
  endedAt?: number;
  done?: number;
  total?: number;
  message?: string;
}

export interface OverlayPanelState {
  title: string;
  status: BuildStatus;
  error?: string;
  phases: PhaseState[];
  composition?: OverlayComposition;
  /** Where it is published (filled by the publishing work). */
  publishedRef?: string;
  /** Whether the Publish button is wired (the publishing work turns it on). */
  canPublish: boolean;
  /** A publish job is running (Cancel cancels it). */
  publishing?: boolean;
}

export interface ServerPanelState {
  serverId: string;
  name: string;
  cloudlet: string;
  /** Nova status: BUILD, ACTIVE, PAUSED, SHUTOFF, MIGRATING, ERROR, DELETED ... */
  status: string;
  operation?: 'synthesis' | 'handoff';
  phases: PhaseState[];
  bytesSent?: number;
  totalMs?: number;
  downtimeMs?: number;
  destination?: string;
  error?: string;
  /** Where its back-end answers (forwarded ports as http:// URLs). */
  urls?: string[];
  updatedAt: number;
}

/** One bar of the Reservations panel: a lease window on a device, as fractions (0..1) of the axis. */
export interface TimelineBarView { left: number; width: number; label: string; mine: boolean; status: string; start: string; end: string; leaseId: string | null }
export interface TimelineRowView { device: string; machineName: string; bars: TimelineBarView[] }
/** Leases per device on a time axis (computed by extension/state/devicesTree.ts reservationTimeline). */
export interface TimelineView { from: number; to: number; now: number; rows: TimelineRowView[]; ticks: { at: number; label: string }[] }

export interface ReservationsPanelState {
  /** One time axis per cloudlet that offers devices. */
  cloudlets: { name: string; timeline?: TimelineView; error?: string }[];
  loading: boolean;
  updatedAt: number;
}

/** One slice of the composition chart (computed on the host: extension/state/panels.ts chartSlices). */
export interface ChartSlice {
  key: string;
  label: string;
  area: CompositionPart['area'];
  encoding: CompositionPart['encoding'];
  bytes: number;
  /** 0..1 of all parts' bytes. */
  share: number;
}

// ---------------------------------------------------------------------------------------------
// Messages.

/** Extension -> webview. */
export type HostMessage =
  | { type: 'overlay/state'; state: OverlayPanelState; chart: ChartSlice[] }
  | { type: 'server/state'; state: ServerPanelState }
  | { type: 'reservations/state'; state: ReservationsPanelState }
  | { type: 'progress'; event: ProgressEvent };

/** Webview -> extension. */
export type WebviewMessage =
  | { type: 'ready'; panel: PanelKind }
  | { type: 'overlay/publish' }
  | { type: 'overlay/cancel' }
  | { type: 'server/refresh' }
  | { type: 'server/action'; action: 'open' | 'handoff' | 'delete' }
  | { type: 'reservations/refresh' }
  | { type: 'reservations/reserve' }
  | { type: 'copy'; text: string };

export function isWebviewMessage(m: unknown): m is WebviewMessage {
  if (!m || typeof m !== 'object') return false;
  const t = (m as { type?: unknown }).type;
  if (t === 'server/action') return ['open', 'handoff', 'delete'].includes((m as { action?: unknown }).action as string);
  return t === 'ready' || t === 'overlay/publish' || t === 'overlay/cancel' || t === 'server/refresh' || t === 'copy'
    || t === 'reservations/refresh' || t === 'reservations/reserve';
}
