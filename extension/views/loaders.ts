/**
 * What each tree view shows, loaded from the cloudlets: one loader per view. A failure becomes the
 * view's condition (unreachable, unauthorized, noDaemon) and drops the cached session, so the next
 * load signs in again.
 */
import type { ImageInfo, ServerInfo } from '../api';
import { LOCAL, type Cloudlets } from '../cloudlets';
import type { Loaded } from './nodeTree';
import { classifyError } from '../state/errors';
import { cloudletNodes, messageNode, overlayNodes, sandboxNodes, type CloudletEntry, type ViewCondition } from '../state/tree';
import { deviceNodes } from '../state/devicesTree';
import { devicesViewNodes, type DeviceGroup } from '../state/devicesView';
import type { Container, Device, Lease } from '../../sandbox/client/devices';

export type ViewName = 'sandbox' | 'cloudlets' | 'overlays' | 'devices';

export function conditionOf(e: unknown): { condition: ViewCondition; error: string } {
  const shown = classifyError(e);
  const condition: ViewCondition = shown.kind === 'unauthorized' || shown.kind === 'untrusted' ? shown.kind : shown.kind === 'missingTool' ? 'noDaemon' : 'unreachable';
  return { condition, error: shown.message };
}

/** What a load of the local daemon found: its servers, or why it failed. */
export type SandboxOutcome = { servers: ServerInfo[]; images?: ImageInfo[] } | { error: unknown; message: string };

/** The Sandbox view: the local daemon's bases and servers; `report` gets the outcome (status bar, setup commands). */
export async function loadSandbox(cloudlets: Cloudlets, report: (o: SandboxOutcome) => void): Promise<Loaded> {
  try {
    const s = await cloudlets.session(LOCAL);
    const [images, servers] = await Promise.all([s.listImages(), s.listServers()]);
    report({ servers, images });
    const nodes = sandboxNodes(images, servers);
    return { nodes, condition: nodes.length ? 'ok' : 'empty' };
  } catch (e) {
    cloudlets.forget(LOCAL);
    const c = conditionOf(e);
    report({ error: e, message: c.error });
    // A missing Node/CLI shows the welcome content (install hint, settings); other failures a node with Retry.
    return { nodes: c.condition === 'noDaemon' ? [] : [messageNode('local', `${c.error} (click to retry)`, { icon: 'warning', retry: true })], ...c };
  }
}

/** The Cloudlets view: images and servers of every configured cloudlet; `onFailure` hears why one failed. */
export async function loadCloudlets(cloudlets: Cloudlets, onFailure: (name: string, e: unknown) => void): Promise<Loaded> {
  const configs = cloudlets.list();
  if (!configs.length) return { nodes: [], condition: 'empty' };
  const entries: CloudletEntry[] = await Promise.all(configs.map(async (c): Promise<CloudletEntry> => {
    try {
      const s = await cloudlets.session(c.name);
      const [images, servers] = await Promise.all([s.listImages(), s.listServers()]);
      return { name: c.name, url: c.url, condition: 'ok', images, servers };
    } catch (e) {
      cloudlets.forget(c.name);
      onFailure(c.name, e);
      return { name: c.name, url: c.url, ...conditionOf(e) };
    }
  }));
  return { nodes: cloudletNodes(entries), condition: 'ok' };
}

/** The Overlays view: the overlays the local daemon built. */
export async function loadOverlays(cloudlets: Cloudlets): Promise<Loaded> {
  try {
    const s = await cloudlets.session(LOCAL);
    const overlays = await s.listOverlays();
    const nodes = overlayNodes(overlays);
    return { nodes, condition: nodes.length ? 'ok' : 'empty' };
  } catch (e) {
    const c = conditionOf(e);
    return { nodes: c.condition === 'noDaemon' ? [] : [messageNode('overlays', `${c.error} (click to retry)`, { icon: 'warning', retry: true })], ...c };
  }
}

interface DevicesData { cloudlet: string; url?: string; error?: string; noService?: boolean; data?: { devices: Device[]; leases: Lease[]; containers: Container[] } }

/**
 * The Devices view: devices, the caller's leases on them and their containers, per configured
 * cloudlet offering devices. While a lease is live a minute clock asks for a reload (`onTick`) that
 * only recomputes "time left" from what was fetched last; `changed()` makes the next load fetch.
 */
export class DevicesLoader {
  private data: DevicesData[] | undefined;
  private clock: ReturnType<typeof setTimeout> | undefined;
  private clockOnly = false;

  constructor(private readonly cloudlets: Cloudlets, private readonly onTick: () => void) {}

  /** A real change (event, user refresh): the next load fetches again. */
  changed(): void { this.clockOnly = false; }

  async load(): Promise<Loaded> {
    const recompute = this.clockOnly;
    this.clockOnly = false;
    const configs = this.cloudlets.list();
    if (!configs.length) { this.data = []; return { nodes: [], condition: 'empty' }; }
    // The minute tick only recomputes "time left" from what was fetched last: no API call.
    if (!recompute || !this.data) {
      this.data = await Promise.all(configs.map(async (c): Promise<DevicesData> => {
        try {
          const d = (await this.cloudlets.session(c.name)).devices?.();
          if (!d) return { cloudlet: c.name, noService: true };
          const [devices, leases, containers] = await Promise.all([d.listDevices(), d.listLeases(), d.listContainers()]);
          return { cloudlet: c.name, url: c.url, data: { devices, leases, containers } };
        } catch (e) {
          this.cloudlets.forget(c.name);
          return { cloudlet: c.name, url: c.url, error: conditionOf(e).error };
        }
      }));
    }
    const now = Date.now();
    const groups: DeviceGroup[] = this.data.map((g) => ({ cloudlet: g.cloudlet, url: g.url, error: g.error, noService: g.noService,
      nodes: g.data ? deviceNodes({ cloudlet: g.cloudlet, ...g.data, now }) : undefined }));
    const live = this.data.some((g) => g.data?.leases.some((l) => l.status === 'ACTIVE' || l.status === 'PENDING' || l.status === 'STARTING'));
    if (this.clock) clearTimeout(this.clock);
    this.clock = live ? setTimeout(() => { this.clockOnly = true; this.onTick(); }, 60_000) : undefined;
    const nodes = devicesViewNodes(groups);
    return { nodes, condition: nodes.length ? 'ok' : 'empty' };
  }

  dispose(): void { if (this.clock) clearTimeout(this.clock); }
}
