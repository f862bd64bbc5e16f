/**
 * The state behind the tree views, as plain data: given what the daemons answered, which nodes
 * to show, with which labels, icons and contextValue. No vscode import, so unit tests run it as is;
 * extension/views/* turn these descriptors into TreeItems.
 *
 * contextValue is derived from state, words separated by spaces, the kind first:
 *   "base", "sandbox running", "sandbox paused", "server active local", "cloudlet connected",
 *   "cloudlet unreachable", "overlay", "overlay published", "message retry".
 * package.json's menus match them with regexes such as `viewItem =~ /^sandbox\b.*\brunning\b/`.
 */
import type { ImageInfo, OverlayInfo, ServerInfo } from '../api';
import { formatBytes } from '../../sandbox/client';

export type NodeKind = 'base' | 'sandbox' | 'cloudlet' | 'image' | 'server' | 'overlay' | 'message' | 'device' | 'lease' | 'container';

export interface NodeDesc {
  id: string;
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  /** A codicon id (ThemeIcon), e.g. 'vm-running'. */
  icon: string;
  /** Optional ThemeColor id for the icon. */
  iconColor?: string;
  contextValue: string;
  collapsible: 'none' | 'collapsed' | 'expanded';
  /** Command run on click. */
  command?: { id: string; title: string };
  /** Which cloudlet ("local" for the sandbox daemon) and resource the node stands for. */
  cloudlet?: string;
  resourceId?: string;
  children?: NodeDesc[];
}

/** What a view shows when it cannot show data. Drives the views-welcome `when` context keys too. */
export type ViewCondition = 'loading' | 'ok' | 'empty' | 'unreachable' | 'unauthorized' | 'untrusted' | 'noDaemon';

export const BASE_TYPE = 'cloudlet_base_disk';
export const OVERLAY_TYPE = 'cloudlet_overlay';

export function isBaseImage(i: ImageInfo): boolean {
  return i.cloudletType === BASE_TYPE;
}

export function shortId(id: string | undefined, n = 12): string {
  return id ? id.replace(/^sha256:/, '').slice(0, n) : '';
}

export { formatBytes };

const STATUS_ICON: Record<string, { icon: string; color?: string }> = {
  ACTIVE: { icon: 'vm-running', color: 'testing.iconPassed' },
  PAUSED: { icon: 'debug-pause', color: 'charts.yellow' },
  SUSPENDED: { icon: 'debug-pause', color: 'charts.yellow' },
  BUILD: { icon: 'loading~spin' },
  MIGRATING: { icon: 'arrow-swap' },
  SHUTOFF: { icon: 'vm-outline' },
  ERROR: { icon: 'error', color: 'errorForeground' },
};

export function serverIcon(status: string): { icon: string; color?: string } {
  return STATUS_ICON[status.toUpperCase()] ?? { icon: 'vm' };
}

/** The state words of a server's contextValue. */
export function serverState(status: string): string {
  const s = status.toUpperCase();
  if (s === 'ACTIVE') return 'running';
  if (s === 'PAUSED' || s === 'SUSPENDED') return 'paused';
  if (s === 'SHUTOFF') return 'stopped';
  if (s === 'BUILD' || s === 'MIGRATING') return 'busy';
  if (s === 'ERROR') return 'error';
  return s.toLowerCase();
}

function portsText(ports: Record<string, string> | undefined): string {
  return ports ? Object.entries(ports).map(([g, h]) => `${g} → ${h}`).join(', ') : '';
}

export function baseNode(img: ImageInfo, cloudlet: string): NodeDesc {
  return {
    id: `${cloudlet}/base/${img.id}`,
    kind: 'base',
    label: img.name,
    description: [shortId(img.baseId), formatBytes(img.size)].filter(Boolean).join(' · '),
    tooltip: `Base VM ${img.name}\nbase ID ${img.baseId ?? '?'}\nimage ${img.id}`,
    icon: 'server-environment',
    contextValue: cloudlet === 'local' ? 'base local' : 'base',
    collapsible: 'none',
    cloudlet,
    resourceId: img.id,
  };
}

export function serverNode(s: ServerInfo, cloudlet: string, kind: 'sandbox' | 'server'): NodeDesc {
  const ic = serverIcon(s.status);
  const words = [kind, serverState(s.status)];
  if (cloudlet === 'local') words.push('local');
  // "web": it has a forwarded TCP port, so Open in Browser and Copy URL apply.
  if (Object.keys(s.ports ?? {}).some((p) => !/\/udp$/i.test(p))) words.push('web');
  const ports = portsText(s.ports);
  return {
    id: `${cloudlet}/${kind}/${s.id}`,
    kind,
    label: s.name,
    description: [s.status, ports].filter(Boolean).join(' · '),
    tooltip: `${kind === 'sandbox' ? 'Sandbox VM' : 'Server'} ${s.name}\nstatus ${s.status}\nid ${s.id}` +
      (s.baseId ? `\nbase ${s.baseId}` : '') + (ports ? `\nports ${ports}` : ''),
    icon: ic.icon,
    iconColor: ic.color,
    contextValue: words.join(' '),
    collapsible: 'none',
    command: kind === 'server' ? { id: 'cloudlet.showServer', title: 'Show Server' } : undefined,
    cloudlet,
    resourceId: s.id,
  };
}

export function messageNode(id: string, label: string, opts: { icon?: string; retry?: boolean; tooltip?: string } = {}): NodeDesc {
  return {
    id: `message/${id}`, kind: 'message', label, icon: opts.icon ?? 'info', tooltip: opts.tooltip ?? label,
    contextValue: opts.retry ? 'message retry' : 'message', collapsible: 'none',
    command: opts.retry ? { id: 'cloudlet.refresh', title: 'Retry' } : undefined,
  };
}

/** The Sandbox view: the local daemon's base VMs, then its sandbox VMs. */
export function sandboxNodes(images: ImageInfo[], servers: ServerInfo[]): NodeDesc[] {
  const bases = images.filter(isBaseImage).sort((a, b) => a.name.localeCompare(b.name)).map((i) => baseNode(i, 'local'));
  const vms = [...servers].sort((a, b) => a.name.localeCompare(b.name)).map((s) => serverNode(s, 'local', 'sandbox'));
  return [...bases, ...vms];
}

export interface CloudletEntry {
  name: string;
  url: string;
  condition: ViewCondition;
  error?: string;
  images?: ImageInfo[];
  servers?: ServerInfo[];
}

/** The Cloudlets view: each configured cloudlet with its servers and base VMs. */
export function cloudletNodes(entries: CloudletEntry[]): NodeDesc[] {
  return entries.map((c) => {
    const ok = c.condition === 'ok' || c.condition === 'empty';
    const state = ok ? 'connected' : c.condition === 'unauthorized' || c.condition === 'untrusted' || c.condition === 'loading' ? c.condition : 'unreachable';
    const children: NodeDesc[] = [];
    if (ok) {
      for (const s of [...(c.servers ?? [])].sort((a, b) => a.name.localeCompare(b.name))) children.push(serverNode(s, c.name, 'server'));
      for (const i of (c.images ?? []).filter(isBaseImage)) children.push(baseNode(i, c.name));
      if (!children.length) children.push(messageNode(`${c.name}/empty`, 'No servers or base VMs yet'));
    } else if (c.condition !== 'loading') {
      const what = c.condition === 'unauthorized' ? 'Wrong credentials' : c.condition === 'untrusted' ? 'Certificate refused' : 'Not reachable';
      children.push(messageNode(`${c.name}/error`, `${what}: ${c.error ?? ''} (click to retry)`, { icon: 'warning', retry: true }));
    }
    return {
      id: `cloudlet/${c.name}`,
      kind: 'cloudlet' as const,
      label: c.name,
      description: c.url + (state === 'connected' ? '' : ` · ${state}`),
      tooltip: `${c.name}\n${c.url}\n${state}${c.error ? `\n${c.error}` : ''}`,
      icon: state === 'connected' ? 'cloud' : state === 'loading' ? 'loading~spin' : 'warning',
      contextValue: `cloudlet ${state}`,
      collapsible: 'expanded' as const,
      cloudlet: c.name,
      resourceId: c.name,
      children,
    };
  });
}

/** The Overlays view: local builds, newest first, with where they are published. */
export function overlayNodes(overlays: OverlayInfo[]): NodeDesc[] {
  return [...overlays].sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '')).map((o) => ({
    id: `overlay/${o.id}`,
    kind: 'overlay' as const,
    label: o.name,
    description: [formatBytes(o.size), o.publishedRef ?? ''].filter(Boolean).join(' · '),
    tooltip: `Overlay ${o.name}\nid ${o.id}\nbase ${o.baseId}\n${formatBytes(o.size)}` + (o.publishedRef ? `\npublished as ${o.publishedRef}` : ''),
    icon: 'layers',
    contextValue: o.publishedRef ? 'overlay published' : 'overlay',
    collapsible: 'none' as const,
    command: { id: 'cloudlet.showOverlay', title: 'Show Overlay' },
    cloudlet: 'local',
    resourceId: o.id,
  }));
}

/** The Sandbox status bar item's text and tooltip, from the local daemon's sandbox VMs. */
export function sandboxStatus(condition: ViewCondition, servers: ServerInfo[]): { text: string; tooltip: string } {
  if (condition === 'noDaemon') return { text: '$(warning) Sandbox: set-up needed', tooltip: 'The local cloudlet daemon cannot start: a tool is missing. Click for what and how to fix it.' };
  if (condition === 'unreachable') return { text: '$(warning) Sandbox: daemon down', tooltip: 'The local cloudlet daemon is not reachable. Click for the reason and the fix.' };
  if (condition === 'loading') return { text: '$(loading~spin) Sandbox', tooltip: 'Connecting to the local cloudlet daemon' };
  const running = servers.filter((s) => s.status.toUpperCase() === 'ACTIVE');
  const paused = servers.filter((s) => serverState(s.status) === 'paused');
  if (running.length === 1 && servers.length === 1) return { text: `$(vm-running) ${running[0].name}`, tooltip: `Sandbox VM ${running[0].name} is running` };
  if (running.length) return { text: `$(vm-running) ${running.length} sandbox VM${running.length > 1 ? 's' : ''}`, tooltip: running.map((s) => s.name).join(', ') };
  if (paused.length) return { text: `$(debug-pause) ${paused[0].name}`, tooltip: `Sandbox VM ${paused[0].name} is paused` };
  return { text: '$(vm-outline) Sandbox', tooltip: 'No sandbox VM is running' };
}

/**
 * A row's accessible name: what it shows (label, then description), then the tooltip's details.
 * VS Code reads a string tooltip instead when none is given, and ours leave out the description
 * (a base's ID and size, a server's status): speech-input users say what they see (WCAG 2.5.3).
 */
export function accessibleLabel(n: Pick<NodeDesc, 'label' | 'description' | 'tooltip'>): string {
  const shown = n.description ? `${n.label}, ${n.description}` : n.label;
  const details = (n.tooltip ?? '').split('\n').map((l) => l.trim()).filter((l) => l && l !== n.label);
  return details.length ? `${shown}. ${details.join('. ')}` : shown;
}
