/**
 * The state behind the Overlay and Server panels, as pure functions over progress events and
 * results, so unit tests run them without VS Code or a webview. The panels send the whole state
 * to the webview after each change (extension/protocol.ts types it).
 */
import type { ProgressEvent } from '../../sandbox/client/types';
import type { ChartSlice, CompositionPart, OverlayComposition, OverlayPanelState, PhaseState, ServerPanelState } from '../protocol';
import type { HandoffResult, JobEnd } from '../api';

/** Adds a progress event to a phase list: a new phase name closes the previous open phase. */
export function applyPhase(phases: PhaseState[], e: ProgressEvent, now = Date.now()): PhaseState[] {
  const at = e.at ?? now;
  const out = phases.map((p) => ({ ...p }));
  const last = out[out.length - 1];
  if (last && last.name === e.phase && last.endedAt === undefined) {
    last.done = e.done ?? last.done;
    last.total = e.total ?? last.total;
    last.message = e.message ?? last.message;
    return out;
  }
  if (last && last.endedAt === undefined) last.endedAt = at;
  out.push({ name: e.phase, startedAt: at, done: e.done, total: e.total, message: e.message });
  return out;
}

export function closePhases(phases: PhaseState[], at = Date.now()): PhaseState[] {
  return phases.map((p) => (p.endedAt === undefined ? { ...p, endedAt: at } : p));
}

export function initialOverlayState(title: string): OverlayPanelState {
  return { title, status: 'idle', phases: [], canPublish: false };
}

export function overlayProgress(s: OverlayPanelState, e: ProgressEvent): OverlayPanelState {
  return { ...s, status: 'running', error: undefined, phases: applyPhase(s.phases, e) };
}

export function overlayEnded(s: OverlayPanelState, end: JobEnd, composition?: OverlayComposition): OverlayPanelState {
  const status = end.status === 'DONE' ? 'done' : end.status === 'CANCELLED' ? 'cancelled' : 'failed';
  return { ...s, status, error: end.error, phases: closePhases(s.phases), composition: composition ?? s.composition };
}

const ENCODINGS: CompositionPart['encoding'][] = ['zero', 'base-ram', 'base-disk', 'self', 'raw', 'delta', 'state'];

function normEncoding(x: string): CompositionPart['encoding'] | undefined {
  const k = x.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase().replace(/[_\s]/g, '-');
  if ((ENCODINGS as string[]).includes(k)) return k as CompositionPart['encoding'];
  if (k === 'zeros') return 'zero';
  if (k === 'base-memory' || k === 'base-mem' || k === 'copy-base-ram' || k === 'ram-copy') return 'base-ram';
  if (k === 'copy-base-disk' || k === 'disk-copy') return 'base-disk';
  if (k === 'overlay' || k === 'dedup' || k === 'copy-self' || k === 'earlier' || k === 'self-copy') return 'self';
  if (k === 'xdelta' || k === 'xdelta3' || k === 'bsdiff' || k === 'xor') return 'delta';
  return undefined;
}

/**
 * Reads "what the overlay is made of" from an overlay manifest (or an image's properties). Accepts
 * the breakdown as `{ram: {zero: {chunks, bytes}, ...}, disk: {...}}`, as a list of
 * `{area, encoding, chunks, bytes}`, or with counts only (4 KiB chunks). Unknown parts are skipped.
 */
export function compositionFromManifest(m: any): OverlayComposition | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const b = m.breakdown ?? m.encodings ?? m.composition;
  const parts: CompositionPart[] = [];
  const push = (area: string, enc: string, v: any) => {
    const a = area.toLowerCase().startsWith('mem') ? 'ram' : area.toLowerCase();
    const e = normEncoding(enc);
    if ((a !== 'ram' && a !== 'disk' && a !== 'state') || !e) return;
    const chunks = typeof v === 'number' ? v : Number(v?.chunks ?? v?.count ?? 0);
    const bytes = typeof v === 'object' && v && v.bytes !== undefined ? Number(v.bytes) : chunks * 4096;
    if (chunks > 0 || bytes > 0) parts.push({ area: a, encoding: e, chunks, bytes });
  };
  if (Array.isArray(b)) {
    for (const p of b) if (p && typeof p === 'object') push(String(p.area ?? p.kind ?? ''), String(p.encoding ?? p.type ?? ''), p);
  } else if (b && typeof b === 'object') {
    for (const [area, v0] of Object.entries(b)) {
      // {ram: {zero: n, ...}} or the overlay format's {ram: {chunks, encodings: {zero: n, ...}, ...}}
      const encs = v0 && typeof v0 === 'object' && (v0 as any).encodings && typeof (v0 as any).encodings === 'object' ? (v0 as any).encodings : v0;
      if (encs && typeof encs === 'object') for (const [enc, v] of Object.entries(encs)) push(area, enc, v);
    }
  }
  const stateBytes = Number(m.deviceStateBytes ?? m.device_state_bytes ?? b?.deviceStateBytes ?? m.state?.size ?? m.deviceState?.size ?? 0);
  if (stateBytes > 0 && !parts.some((p) => p.area === 'state')) parts.push({ area: 'state', encoding: 'state', chunks: 1, bytes: stateBytes });
  const segments = Array.isArray(m.segments) ? m.segments.length : Number(m.segments ?? 0);
  const compressed = Number(m.compressedBytes ?? m.compressed_bytes ?? m.size ??
    (Array.isArray(m.segments) ? m.segments.reduce((n: number, s: any) => n + Number(s.size ?? s.compressedSize ?? s.compressed_size ?? 0), 0) : 0));
  return {
    overlayId: String(m.overlayId ?? m.overlay_id ?? m.id ?? ''),
    baseId: String(m.baseId ?? m.base_id ?? m.base ?? ''),
    compressedBytes: compressed,
    rawBytes: parts.reduce((n, p) => n + p.bytes, 0),
    segments,
    parts,
  };
}

/** The discard figures of a build job's result (`discard: {memoryZeroedBytes, diskFreedBytes}`), if any. */
export function discardedFromResult(result: any): OverlayComposition['discarded'] {
  const d = result && typeof result === 'object' ? result.discard : undefined;
  if (!d || typeof d !== 'object') return undefined;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);
  const out = { memoryBytes: num(d.memoryZeroedBytes), diskBytes: num(d.diskFreedBytes) };
  return out.memoryBytes === undefined && out.diskBytes === undefined ? undefined : out;
}

/** Slices of the composition chart: one per (area, encoding), largest first, with its share. */
const ENC_LABEL: Record<CompositionPart['encoding'], string> = {
  zero: 'zero', 'base-ram': 'copy of base RAM', 'base-disk': 'copy of base disk', self: 'copy within overlay',
  raw: 'raw', delta: 'delta vs base', state: 'device state',
};
const AREA_LABEL: Record<CompositionPart['area'], string> = { ram: 'RAM', disk: 'Disk', state: 'State' };

export function chartSlices(c: OverlayComposition | undefined): ChartSlice[] {
  if (!c) return [];
  const total = c.parts.reduce((n, p) => n + p.bytes, 0);
  return c.parts
    .filter((p) => p.bytes > 0)
    .map((p) => ({
      key: `${p.area}:${p.encoding}`,
      label: p.area === 'state' ? 'Device state' : `${AREA_LABEL[p.area]}: ${ENC_LABEL[p.encoding]}`,
      area: p.area, encoding: p.encoding, bytes: p.bytes, share: total ? p.bytes / total : 0,
    }))
    .sort((a, b) => b.bytes - a.bytes);
}

// --- Server panel -----------------------------------------------------------------------------

export function initialServerState(serverId: string, name: string, cloudlet: string, status: string): ServerPanelState {
  return { serverId, name, cloudlet, status, phases: [], updatedAt: Date.now() };
}

export function serverProgress(s: ServerPanelState, op: 'synthesis' | 'handoff', e: ProgressEvent): ServerPanelState {
  const phases = s.operation === op ? s.phases : [];
  const bytes = e.phase.startsWith('handoff') || e.phase.includes('send') || e.phase.includes('transfer') || e.phase.includes('fetch')
    ? Math.max(s.bytesSent ?? 0, e.done ?? 0) : s.bytesSent;
  return { ...s, operation: op, phases: applyPhase(phases, e), bytesSent: bytes, error: undefined, updatedAt: e.at ?? Date.now() };
}

export function serverStatus(s: ServerPanelState, status: string): ServerPanelState {
  return { ...s, status, updatedAt: Date.now() };
}

/** Reads a handoff job's result; field names follow the daemon's snake_case or camelCase. */
export function handoffResult(r: unknown): HandoffResult {
  const o = (r && typeof r === 'object' ? r : {}) as Record<string, any>;
  const h = (o.handoff && typeof o.handoff === 'object' ? o.handoff : o) as Record<string, any>;
  const num = (...keys: string[]) => { for (const k of keys) if (typeof h[k] === 'number') return h[k] as number; return undefined; };
  return {
    totalMs: num('totalMs', 'total_ms', 'total_time_ms') ?? (typeof h.total_s === 'number' ? h.total_s * 1000 : undefined),
    downtimeMs: num('downtimeMs', 'downtime_ms') ?? (typeof h.downtime_s === 'number' ? h.downtime_s * 1000 : undefined),
    bytesSent: num('bytesSent', 'bytes_sent', 'bytes'),
    destServerId: typeof h.destServerId === 'string' ? h.destServerId : typeof h.dest_server_id === 'string' ? h.dest_server_id : undefined,
    ...(typeof h.tracking === 'string' ? { tracking: h.tracking } : {}),
    ...(typeof h.tracking_fallback === 'string' ? { trackingFallback: h.tracking_fallback } : {}),
    ...(Array.isArray(h.round_pages) && h.round_pages.every((n: unknown) => Number.isInteger(n)) ? { roundPages: h.round_pages as number[] } : {}),
  };
}

export function serverEnded(s: ServerPanelState, end: JobEnd, opts: { status?: string; destination?: string } = {}): ServerPanelState {
  const next: ServerPanelState = { ...s, phases: closePhases(s.phases), updatedAt: Date.now() };
  if (end.status !== 'DONE') {
    next.error = end.error ?? (end.status === 'CANCELLED' ? 'cancelled' : 'failed');
    if (opts.status) next.status = opts.status;
    return next;
  }
  if (s.operation === 'handoff') {
    const r = handoffResult(end.result);
    next.totalMs = r.totalMs; next.downtimeMs = r.downtimeMs; next.bytesSent = r.bytesSent ?? s.bytesSent;
    next.tracking = r.tracking; next.trackingFallback = r.trackingFallback; next.roundPages = r.roundPages;
    next.destination = opts.destination ?? s.destination;
  }
  if (opts.status) next.status = opts.status;
  return next;
}
