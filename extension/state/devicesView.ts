/**
 * Pure state for the Devices view's roots and the device commands' pickers (no vscode import):
 * one group per cloudlet that offers devices (flattened when there is only one), the choices of
 * "Reserve Device..." and the parsing of what the user types.
 */
import type { Device, DeviceAllocation, Lease } from '../../sandbox/client/devices';
import type { NodeDesc } from './tree';
import { messageNode } from './tree';
import type { DeviceNodeDesc } from './devicesTree';
import { isTcpPort } from '../../sandbox/client';

export interface DeviceGroup { cloudlet: string; url?: string; nodes?: DeviceNodeDesc[]; error?: string; noService?: boolean }

/**
 * VS Code remembers a tree item's expansion by its id, so a device that had no lease (not
 * collapsible) would stay closed once a lease appears under it. A node with children gets another id.
 */
function expandable(n: NodeDesc): NodeDesc {
  if (!n.children?.length) return n;
  return { ...n, id: `${n.id}+`, children: n.children.map(expandable) };
}

/** Roots of the Devices view. Cloudlets without the reservation service are left out. */
export function devicesViewNodes(groups: DeviceGroup[]): NodeDesc[] {
  return devicesViewRoots(groups).map(expandable);
}

function devicesViewRoots(groups: DeviceGroup[]): NodeDesc[] {
  const shown = groups.filter((g) => !g.noService);
  const withDevices = shown.filter((g) => !g.error && g.nodes && g.nodes.length);
  if (shown.length === 1 && withDevices.length === 1) return withDevices[0].nodes as NodeDesc[];
  // Each cloudlet that lends devices is a group, also an empty one: it says so (an admin enrolls them).
  return shown.map((g): NodeDesc => {
    const empty = !g.error && !(g.nodes && g.nodes.length);
    const children: NodeDesc[] = g.error ? [messageNode(`devices/${g.cloudlet}/error`, `${g.error} (click to retry)`, { icon: 'warning', retry: true })]
      : empty ? [messageNode(`devices/${g.cloudlet}/none`, 'No devices enrolled', { tooltip: `${g.cloudlet} lends out no device yet. An admin of it enrolls devices (Enroll Device...).` })]
        : (g.nodes as NodeDesc[]);
    return {
      id: `devices/${g.cloudlet}`, kind: 'cloudlet', label: g.cloudlet,
      description: g.error ? 'not reachable' : empty ? 'no devices enrolled' : `${g.nodes!.length} device${g.nodes!.length === 1 ? '' : 's'}`,
      tooltip: `${g.cloudlet}${g.url ? `\n${g.url}` : ''}${g.error ? `\n${g.error}` : ''}`, icon: g.error ? 'warning' : 'cloud',
      contextValue: g.error ? 'devices-cloudlet unreachable' : 'devices-cloudlet', collapsible: 'expanded', cloudlet: g.cloudlet, resourceId: g.cloudlet,
      children,
    };
  });
}

export interface DeviceChoice { label: string; description: string; detail?: string; machineName?: string; deviceName?: string }

/** "Reserve Device..." choices: any device of a machine type, then each device with its state. */
export function deviceChoices(devices: Device[], leases: Lease[]): DeviceChoice[] {
  const live = leases.filter((l) => l.status === 'ACTIVE' || l.status === 'PENDING' || l.status === 'STARTING');
  const mine = (d: Device) => live.some((l) => l.reservations.some((r) => r.allocated_devices.includes(d.id)));
  const byMachine = new Map<string, Device[]>();
  for (const d of devices) byMachine.set(d.machine_name, [...(byMachine.get(d.machine_name) ?? []), d]);
  const out: DeviceChoice[] = [];
  for (const [m, ds] of [...byMachine].sort((a, b) => a[0].localeCompare(b[0]))) {
    const up = ds.filter((d) => d.health.status !== 'down').length;
    out.push({ label: `Any ${m}`, description: `${ds.length} device${ds.length === 1 ? '' : 's'}, ${up} up`, machineName: m });
  }
  for (const d of [...devices].sort((a, b) => a.name.localeCompare(b.name))) {
    out.push({ label: d.name, description: [d.machine_name, d.health.status, mine(d) ? 'reserved by you' : ''].filter(Boolean).join(' · '), detail: d.model ?? undefined, deviceName: d.name });
  }
  return out;
}

/** The resource_properties filter for a choice. */
export function choiceFilter(c: Pick<DeviceChoice, 'machineName' | 'deviceName'>): { machineName?: string; filter?: unknown[] } {
  return c.deviceName ? { filter: ['==', '$name', c.deviceName] } : { machineName: c.machineName };
}

/** "30", "90m", "2h", "1h30m" -> minutes; undefined when not a positive length. */
export function parseMinutes(text: string): number | undefined {
  const t = text.trim().toLowerCase();
  let m: RegExpMatchArray | null;
  if ((m = t.match(/^(\d+)\s*(m|min|mins|minutes?)?$/))) return Number(m[1]) > 0 ? Number(m[1]) : undefined;
  if ((m = t.match(/^(\d+)\s*h(?:ours?)?\s*(?:(\d+)\s*m(?:in)?)?$/))) { const v = Number(m[1]) * 60 + Number(m[2] ?? 0); return v > 0 ? v : undefined; }
  return undefined;
}

/** "8080, 9000/udp" -> ["8080/tcp", "9000/udp"]; undefined when a part is not a port. */
export function parsePorts(text: string): string[] | undefined {
  const parts = text.split(/[,\s]+/).map((p) => p.trim()).filter(Boolean);
  const out: string[] = [];
  for (const p of parts) {
    const m = p.match(/^(\d{1,5})(?:\/(tcp|udp))?$/i);
    if (!m || !isTcpPort(Number(m[1]))) return undefined;
    out.push(`${m[1]}/${(m[2] ?? 'tcp').toLowerCase()}`);
  }
  return out;
}

/** "KEY=V OTHER=W" -> {KEY: 'V', OTHER: 'W'}; undefined when a part has no "=". */
export function parseEnv(text: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const p of text.split(/\s+/).filter(Boolean)) {
    const i = p.indexOf('=');
    if (i <= 0) return undefined;
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** A default lease name: what is reserved and when ("pi-1-1405", "raspberrypi4-64-1405"). */
export function defaultLeaseName(c: Pick<DeviceChoice, 'machineName' | 'deviceName'>, now: Date): string {
  const hhmm = now.toISOString().slice(11, 16).replace(':', '');
  return `${c.deviceName ?? c.machineName ?? 'device'}-${hhmm}`;
}

/** Leases that can be picked for "Run Container" (ACTIVE) or "End Lease" (not ended). */
export function leaseLabel(l: Lease, deviceNames: Map<string, string>): { label: string; description: string } {
  const devs = l.reservations.flatMap((r) => r.allocated_devices).map((id) => deviceNames.get(id) ?? id.slice(0, 8));
  return { label: l.name, description: `${l.status} · ${devs.join(', ') || 'no device yet'} · until ${l.end_date.slice(0, 16).replace('T', ' ')} UTC` };
}

/**
 * The Reservations panel's time axis: from a quarter of the span before now to the latest end of a
 * window still to come (at least an hour, at most a day ahead), ticks every 15 min, hour or 3 hours.
 */
export function timelineWindow(allocations: DeviceAllocation[], now: number): { spanMs: number; pastMs: number; tickMs: number } {
  const hour = 3600_000, half = hour / 2;
  const ends = allocations.flatMap((a) => a.reservations.map((r) => Date.parse(r.end_date + 'Z'))).filter((t) => Number.isFinite(t) && t > now);
  const ahead = ends.length ? Math.max(...ends) - now : 0;
  const spanMs = Math.min(24 * hour, Math.max(hour, Math.ceil((ahead * 1.1) / half) * half));
  const tickMs = spanMs <= 2 * hour ? hour / 4 : spanMs <= 8 * hour ? hour : 3 * hour;
  return { spanMs, pastMs: spanMs / 4, tickMs };
}
