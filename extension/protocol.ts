/**
 * The one file that types every message between the extension host and the panels' webviews, in
 * both directions. webview/ imports it too (webview/tsconfig.json includes it), so it must stay free
 * of imports: types and pure constants only.
 */

export const PANEL_KINDS = ['overlay', 'server', 'reservations'] as const;
export type PanelKind = typeof PANEL_KINDS[number];

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
  /** What the build's discards left out (issue 13), when the job reported it. */
  discarded?: { memoryBytes?: number; diskBytes?: number };
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
  /** A handoff's dirty-page tracking ('qemu-migration' | 'full-compare'), its fallback reason, RAM pages per round. */
  tracking?: string;
  trackingFallback?: string;
  roundPages?: number[];
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
  | { type: 'reservations/state'; state: ReservationsPanelState };

/** What the Server panel's buttons ask for. */
export const SERVER_ACTIONS = ['open', 'handoff', 'delete'] as const;
export type ServerAction = typeof SERVER_ACTIONS[number];

/** Webview -> extension: the fields each message type carries. */
interface WebviewPayloads {
  ready: { panel: PanelKind };
  'overlay/publish': object;
  'overlay/cancel': object;
  'server/refresh': object;
  'server/action': { action: ServerAction };
  'reservations/refresh': object;
  'reservations/reserve': object;
  copy: { text: string };
}

export type WebviewMessage = { [T in keyof WebviewPayloads]: { type: T } & WebviewPayloads[T] }[keyof WebviewPayloads];

const noFields = () => true;

/**
 * The one list of webview -> extension messages, each with the check of its fields; `satisfies`
 * makes the compiler hold it to WebviewPayloads (a type missing here, or one too many, fails tsc).
 */
const WEBVIEW_MESSAGES = {
  ready: (m) => (PANEL_KINDS as readonly unknown[]).includes(m.panel),
  'overlay/publish': noFields,
  'overlay/cancel': noFields,
  'server/refresh': noFields,
  'server/action': (m) => (SERVER_ACTIONS as readonly unknown[]).includes(m.action),
  'reservations/refresh': noFields,
  'reservations/reserve': noFields,
  copy: (m) => typeof m.text === 'string',
} satisfies { [T in keyof WebviewPayloads]: (m: Record<string, unknown>) => boolean };

/** What a webview posted is untrusted: a known type with the fields that type needs, or nothing. */
export function isWebviewMessage(m: unknown): m is WebviewMessage {
  if (!m || typeof m !== 'object') return false;
  const fields = m as Record<string, unknown>;
  const t = fields.type;
  return typeof t === 'string' && Object.hasOwn(WEBVIEW_MESSAGES, t) && WEBVIEW_MESSAGES[t as keyof WebviewPayloads](fields);
}
