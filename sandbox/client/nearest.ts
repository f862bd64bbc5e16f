/**
 * The nearest cloudlet for an overlay (Elijah's cloudlet discovery, by round-trip time): of the
 * candidate cloudlets, those that hold the overlay's base are probed several times each, rounds
 * interleaved so a burst of load hits all alike; the one with the lowest median wins. Medians
 * within a tolerance are a tie, settled by fewer failed probes, then by name, and shown as such;
 * a cloudlet that cannot be asked or never answers is shown unreachable and never chosen.
 * The CLI (`cloudlet synthesize --nearest`) and the editor ("Synthesize on Nearest Cloudlet") both
 * come here.
 */
import type { CloudletClient } from './client';
import { CloudletError } from '../common/errors';
import { transportFetch, type TlsTrust } from './transport';

export interface Candidate { name: string; client: CloudletClient }

export type NearestState = 'nearest' | 'tie' | 'farther' | 'unreachable' | 'no-base';

export interface NearestRow {
  name: string;
  /** The URL probed (the compute endpoint's version document). */
  url?: string;
  /** Whether the cloudlet holds the base; undefined when it could not be asked. */
  holdsBase?: boolean;
  /** Round-trip times of the probes that answered, in ms, in the order taken. */
  samplesMs: number[];
  failures: number;
  medianMs?: number;
  state: NearestState;
  /** Why: the error of an unreachable cloudlet, who it tied with. */
  note?: string;
}

export interface NearestResult { rows: NearestRow[]; nearest?: string }

export interface NearestOptions {
  /** Probes per cloudlet (default 5). */
  probes?: number;
  /** Per probe (default 3 s). */
  timeoutMs?: number;
  /** Medians closer than max(toleranceMs, toleranceRatio x the lowest) tie (defaults 0.5 ms, 10%). */
  toleranceMs?: number;
  toleranceRatio?: number;
  signal?: AbortSignal;
  /** Called as each phase goes (for a progress line). */
  onPhase?: (message: string) => void;
}

/** The median of the samples (mean of the middle two for an even count). */
export function median(xs: number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Orders measured rows and says which is nearest: reachable ones holding the base by median, ties
 * settled by fewer failures then by name; the others (no base, unreachable) after them. Pure.
 */
export function rankByRtt(rows: NearestRow[], o: Pick<NearestOptions, 'toleranceMs' | 'toleranceRatio'> = {}): NearestResult {
  const measured = rows.filter((r) => r.holdsBase && r.samplesMs.length).map((r) => ({ ...r, medianMs: median(r.samplesMs)! }));
  const rest = rows.filter((r) => !(r.holdsBase && r.samplesMs.length)).map((r): NearestRow => ({
    ...r, state: r.holdsBase === false ? 'no-base' : 'unreachable',
    note: r.note ?? (r.holdsBase && !r.samplesMs.length ? `no probe answered (${r.failures} tried)` : undefined),
  }));
  measured.sort((a, b) => a.medianMs - b.medianMs || a.failures - b.failures || a.name.localeCompare(b.name));
  if (!measured.length) return { rows: [...rest].sort(byStateThenName) };
  const lowest = measured[0].medianMs;
  const tolerance = Math.max(o.toleranceMs ?? 0.5, (o.toleranceRatio ?? 0.1) * lowest);
  const tied = measured.filter((r) => r.medianMs - lowest <= tolerance);
  tied.sort((a, b) => a.failures - b.failures || a.name.localeCompare(b.name));
  const winner = tied[0];
  const others = measured.filter((r) => !tied.includes(r));
  const out: NearestRow[] = [
    { ...winner, state: 'nearest', note: tied.length > 1 ? `tie with ${tied.slice(1).map((r) => r.name).join(', ')} (within ${tolerance.toFixed(2)} ms): ${tieReason(winner, tied[1])}` : undefined },
    ...tied.slice(1).map((r): NearestRow => ({ ...r, state: 'tie', note: `tie with ${winner.name}` })),
    ...others.map((r): NearestRow => ({ ...r, state: 'farther' })),
    ...[...rest].sort(byStateThenName),
  ];
  return { rows: out, nearest: winner.name };
}

function tieReason(w: NearestRow, next: NearestRow): string {
  return w.failures < next.failures ? 'picked for fewer failed probes' : 'picked by name';
}

function byStateThenName(a: NearestRow, b: NearestRow): number {
  const order: Record<NearestState, number> = { nearest: 0, tie: 1, farther: 2, 'no-base': 3, unreachable: 4 };
  return order[a.state] - order[b.state] || a.name.localeCompare(b.name);
}

/**
 * One HTTP round trip to `url` (the connection is kept alive after the first), in ms; through the
 * cloudlet client's TLS trust, so a region with a pinned or CA-signed certificate can be measured.
 */
async function probe(url: string, trust: TlsTrust | undefined, timeoutMs: number, signal?: AbortSignal): Promise<number> {
  const t0 = performance.now();
  const res = await transportFetch(url, { headers: { accept: 'application/json' }, signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs) }, trust);
  await res.arrayBuffer();
  return performance.now() - t0;
}

/** Measures every candidate and ranks them for an overlay of base `baseId`. */
export async function findNearest(candidates: Candidate[], baseId: string, o: NearestOptions = {}): Promise<NearestResult> {
  if (!candidates.length) throw new CloudletError('NotFound', 'no cloudlet to choose from', { hint: 'log in to a fleet (cloudlet login KEYSTONE-URL ...) or add cloudlets' });
  const n = Math.max(1, Math.min(50, o.probes ?? 5));
  const timeoutMs = o.timeoutMs ?? 3000;
  o.onPhase?.(`asking ${candidates.length} cloudlet(s) which hold base ${baseId.slice(0, 12)}`);
  const trustOf = new Map<NearestRow, TlsTrust | undefined>();
  const rows: NearestRow[] = await Promise.all(candidates.map(async (c): Promise<NearestRow> => {
    const row: NearestRow = { name: c.name, samplesMs: [], failures: 0, state: 'unreachable' };
    trustOf.set(row, c.client.trust);
    try {
      row.url = c.client.endpoint('compute') + '/';
      const askMs = Math.max(timeoutMs, 10_000);
      let timer: NodeJS.Timeout | undefined;
      const bases = await Promise.race([c.client.listBases(), new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CloudletError('Timeout', `its image service did not answer within ${askMs / 1000} s`)), askMs);
      })]).finally(() => clearTimeout(timer));
      row.holdsBase = bases.some((b) => b.base_sha256_uuid === baseId);
    } catch (e) {
      row.note = firstLine(e);
    }
    return row;
  }));
  const probed = rows.filter((r) => r.holdsBase && r.url);
  if (probed.length) {
    o.onPhase?.(`probing ${probed.map((r) => r.name).join(', ')}: ${n} round trips each`);
    // A first request per cloudlet opens the connection (TCP, TLS): not counted.
    await Promise.all(probed.map((r) => probe(r.url!, trustOf.get(r), timeoutMs, o.signal).catch(() => undefined)));
    for (let i = 0; i < n; i++) {
      for (const r of probed) {
        if (o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
        try { r.samplesMs.push(await probe(r.url!, trustOf.get(r), timeoutMs, o.signal)); } catch (e) {
          if (o.signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
          r.failures++;
          r.note = firstLine(e);
        }
      }
    }
  }
  return rankByRtt(rows, o);
}

function firstLine(e: unknown): string {
  const m = (e as Error)?.message ?? String(e);
  const cause = (e as { cause?: { code?: string } })?.cause?.code;
  return (cause ? `${m} (${cause})` : m).split('\n')[0];
}

/** The result as a text table (CLI, output channel). */
export function nearestTable(r: NearestResult): string {
  const rows = [['CLOUDLET', 'BASE', 'MEDIAN RTT', 'PROBES', 'STATE'], ...r.rows.map((x) => [
    x.name, x.holdsBase === undefined ? '?' : x.holdsBase ? 'yes' : 'no',
    x.medianMs !== undefined ? `${x.medianMs.toFixed(2)} ms` : '-',
    x.samplesMs.length || x.failures ? `${x.samplesMs.length}/${x.samplesMs.length + x.failures} answered${x.samplesMs.length ? ` (${Math.min(...x.samplesMs).toFixed(2)}-${Math.max(...x.samplesMs).toFixed(2)})` : ''}` : '-',
    x.state + (x.note ? `: ${x.note}` : ''),
  ])];
  const w = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(w[i]))).join('  ')).join('\n') + '\n';
}
