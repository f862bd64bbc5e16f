/**
 * The state behind the Devices view and the Reservations panel, as plain data (no vscode import):
 * devices with their health, under each the caller's leases on it with time left, under each lease
 * its containers on that device; and the per-device time axis of the Reservations panel.
 * Node descriptors follow extension/state/tree.ts (NodeDesc) with three more kinds.
 *
 * contextValue words: "device up|down|unknown", "lease active|pending|ended [degraded]",
 * "container running|stopped|creating|error" — for menus such as `viewItem =~ /^lease\b.*\bactive\b/`.
 */
import type { Container, Device, DeviceAllocation, Lease } from '../../sandbox/client/devices';
import type { NodeDesc } from './tree';

export type DeviceNodeKind = 'device' | 'lease' | 'container' | 'message';
export interface DeviceNodeDesc extends Omit<NodeDesc, 'kind' | 'children'> {
  kind: DeviceNodeKind;
  children?: DeviceNodeDesc[];
}

/** "1h 5m left", "starts in 3m", "ended". */
export function leaseTimeLeft(l: Pick<Lease, 'status' | 'start_date' | 'end_date'>, now: number): string {
  const start = Date.parse(l.start_date + 'Z'), end = Date.parse(l.end_date + 'Z');
  const span = (ms: number) => {
    const m = Math.floor(Math.max(0, ms) / 60_000);
    return m >= 60 ? `${Math.floor(m / 60)}h ${m % 60}m` : m > 0 ? `${m}m` : `${Math.ceil(Math.max(0, ms) / 1000)}s`;
  };
  if (l.status === 'TERMINATED' || l.status === 'ERROR' || end <= now) return 'ended';
  if (start > now || l.status === 'PENDING') return `starts in ${span(start - now)}`;
  return `${span(end - now)} left`;
}

function leaseState(l: Lease): string {
  const s = l.status === 'ACTIVE' ? 'active' : l.status === 'PENDING' || l.status === 'STARTING' ? 'pending' : 'ended';
  return l.degraded ? `${s} degraded` : s;
}

function containerState(c: Container): string {
  return String(c.status).toLowerCase();
}

const CONTAINER_ICON: Record<string, { icon: string; color?: string }> = {
  Running: { icon: 'debug-start', color: 'testing.iconPassed' },
  Creating: { icon: 'loading~spin' },
  Created: { icon: 'package' },
  Stopped: { icon: 'debug-stop' },
  Error: { icon: 'error', color: 'errorForeground' },
};

export function deviceNodes(o: { cloudlet: string; devices: Device[]; leases: Lease[]; containers: Container[]; now: number }): DeviceNodeDesc[] {
  const live = o.leases.filter((l) => l.status !== 'TERMINATED' && l.status !== 'ERROR');
  return o.devices.map((d): DeviceNodeDesc => {
    const mine = live.filter((l) => l.reservations.some((r) => r.allocated_devices.includes(d.id)));
    const active = mine.find((l) => l.status === 'ACTIVE');
    const health = d.health.status;
    return {
      id: `device:${o.cloudlet}:${d.id}`, kind: 'device', label: d.name,
      description: [d.machine_name, health === 'up' ? '' : health, active ? `reserved by you, ${leaseTimeLeft(active, o.now)}` : ''].filter(Boolean).join(' · '),
      tooltip: `${d.name}: ${d.model ?? d.machine_name}${d.health.error ? `\n${d.health.error}` : ''}`,
      icon: 'circuit-board', iconColor: health === 'down' ? 'errorForeground' : active ? 'testing.iconPassed' : undefined,
      contextValue: `device ${health}`, collapsible: mine.length ? 'expanded' : 'none', cloudlet: o.cloudlet, resourceId: d.id,
      children: mine.map((l): DeviceNodeDesc => {
        const cs = o.containers.filter((c) => c.lease_id === l.id && c.device_id === d.id);
        return {
          id: `lease:${o.cloudlet}:${l.id}:${d.id}`, kind: 'lease', label: l.name,
          description: [leaseTimeLeft(l, o.now), l.degraded ? 'degraded' : ''].filter(Boolean).join(' · '),
          tooltip: `${l.status} ${l.start_date.slice(0, 16).replace('T', ' ')} – ${l.end_date.slice(0, 16).replace('T', ' ')} UTC` +
            `${l.degraded_reason ? `\n${l.degraded_reason}` : ''}\nreservation ${l.reservations[0]?.id ?? ''}`,
          icon: l.degraded ? 'warning' : l.status === 'ACTIVE' ? 'watch' : 'calendar', iconColor: l.degraded ? 'charts.yellow' : undefined,
          contextValue: `lease ${leaseState(l)}`, collapsible: cs.length ? 'expanded' : 'none', cloudlet: o.cloudlet, resourceId: l.id,
          children: cs.map((c): DeviceNodeDesc => ({
            id: `container:${o.cloudlet}:${c.uuid}`, kind: 'container', label: c.name, description: `${c.status} · ${c.image}`,
            tooltip: c.status_reason ?? undefined, icon: CONTAINER_ICON[c.status]?.icon ?? 'package', iconColor: CONTAINER_ICON[c.status]?.color,
            contextValue: `container ${containerState(c)}`, collapsible: 'none', cloudlet: o.cloudlet, resourceId: c.uuid,
            command: { id: 'cloudlet.showContainerLogs', title: 'Show Container Logs' },
          })),
        };
      }),
    };
  });
}

/** One bar of the Reservations panel: a lease window on a device, as fractions of the axis. */
export interface TimelineBar { left: number; width: number; label: string; mine: boolean; status: string; start: string; end: string; leaseId: string | null }
export interface TimelineRow { device: string; machineName: string; bars: TimelineBar[] }
export interface Timeline { from: number; to: number; now: number; rows: TimelineRow[]; ticks: { at: number; label: string }[] }

/** Leases per device on a time axis from `now - past` to `now + span`; bars clipped to the axis. */
export function reservationTimeline(allocations: DeviceAllocation[], now: number, spanMs = 6 * 3600_000, pastMs = 3600_000, tickMs = 3600_000): Timeline {
  const from = now - pastMs, to = now + spanMs;
  const frac = (t: number) => (Math.min(Math.max(t, from), to) - from) / (to - from);
  const rows = allocations.map((a) => ({
    device: a.name, machineName: a.machine_name,
    bars: a.reservations
      .map((r) => ({ r, s: Date.parse(r.start_date + 'Z'), e: Date.parse(r.end_date + 'Z') }))
      .filter(({ s, e }) => e > from && s < to)
      .map(({ r, s, e }) => ({
        left: frac(s), width: frac(e) - frac(s), label: r.mine ? (r.lease_name ?? '') : 'reserved', mine: r.mine,
        status: r.status, start: r.start_date, end: r.end_date, leaseId: r.lease_id,
      })),
  }));
  const ticks: { at: number; label: string }[] = [];
  for (let t = Math.ceil(from / tickMs) * tickMs; t <= to; t += tickMs) ticks.push({ at: frac(t), label: new Date(t).toISOString().slice(11, 16) });
  return { from, to, now, rows, ticks };
}
