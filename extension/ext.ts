/**
 * Everything the commands share: output channel, local daemon, cloudlet sessions, the views, the
 * panels and the status bar. Created once in activate(); commands receive it as their first argument.
 */
import * as vscode from 'vscode';
import type { CloudletSession, ServerInfo } from './api';
import { Cloudlets, LOCAL, type Connector } from './cloudlets';
import { LocalDaemon, MissingToolError } from './localDaemon';
import { Output } from './output';
import { NodeTree, type Loaded } from './views/nodeTree';
import { OverlayPanels } from './panels/overlayPanel';
import { ServerPanels } from './panels/serverPanel';
import { classifyError } from './state/errors';
import { cloudletNodes, isBaseImage, messageNode, overlayNodes, sandboxNodes, sandboxStatus, type CloudletEntry, type ViewCondition } from './state/tree';
import { RefreshScheduler, viewsForTopic } from './state/refresh';
import { autoStart, cloudletConfigStore, debounceMs, localDaemonSettings, onWindowClose } from './settings';
import { deviceNodes, reservationTimeline } from './state/devicesTree';
import { devicesViewNodes, timelineWindow, type DeviceGroup } from './state/devicesView';
import { ReservationsPanel } from './panels/reservationsPanel';
import { LogsDocuments } from './views/logsDocument';
import { refusalOf, sayChanged } from './commands/trust';
import { walkthroughDone } from './commands/common';
import type { ReservationsPanelState } from './protocol';
import type { Container, Device, Lease } from '../sandbox/client/devices';

/** The Reservations panel (one), loaded from every configured cloudlet that offers devices. */
class Reservations implements vscode.Disposable {
  panel: ReservationsPanel | undefined;
  private readonly scheduler = new RefreshScheduler(() => void this.load(), 300);
  constructor(private readonly ext: Ext) {}

  open(): ReservationsPanel {
    if (this.panel && !this.panel.isDisposed) { this.panel.reveal(); this.reload(); return this.panel; }
    const p = new ReservationsPanel(this.ext.context.extensionUri);
    this.panel = p;
    p.onRefresh = () => this.reload();
    p.onDispose(() => { if (this.panel === p) this.panel = undefined; });
    void this.load();
    return p;
  }

  /** Reloads soon when the panel is open (lease and device events, commands). */
  reload(): void { if (this.panel && !this.panel.isDisposed) this.scheduler.request(); }

  private async load(): Promise<void> {
    const p = this.panel;
    if (!p || p.isDisposed) return;
    p.update({ ...p.current, loading: true });
    const now = Date.now();
    const cloudlets: ReservationsPanelState['cloudlets'] = [];
    for (const c of this.ext.cloudlets.list()) {
      try {
        const d = (await this.ext.session(c.name)).devices?.();
        if (!d) continue;
        const allocations = await d.allocations();
        const w = timelineWindow(allocations, now);
        cloudlets.push({ name: c.name, timeline: reservationTimeline(allocations, now, w.spanMs, w.pastMs, w.tickMs) });
      } catch (e) {
        cloudlets.push({ name: c.name, error: classifyError(e).message });
      }
    }
    if (!p.isDisposed) p.update({ cloudlets, loading: false, updatedAt: now });
  }

  dispose(): void { this.scheduler.dispose(); this.panel?.dispose(); }
}

interface DevicesData { cloudlet: string; url?: string; error?: string; noService?: boolean; data?: { devices: Device[]; leases: Lease[]; containers: Container[] } }

export type ViewName = 'sandbox' | 'cloudlets' | 'overlays' | 'devices';

function conditionOf(e: unknown): { condition: ViewCondition; error: string } {
  const shown = classifyError(e);
  const condition: ViewCondition = shown.kind === 'unauthorized' || shown.kind === 'untrusted' ? shown.kind : shown.kind === 'missingTool' ? 'noDaemon' : 'unreachable';
  return { condition, error: shown.message };
}

export class Ext implements vscode.Disposable {
  readonly output = new Output();
  readonly localDaemon: LocalDaemon;
  readonly cloudlets: Cloudlets;
  readonly views: Record<ViewName, NodeTree>;
  readonly overlayPanels: OverlayPanels;
  readonly serverPanels: ServerPanels;
  readonly status: vscode.StatusBarItem;
  readonly logs = new LogsDocuments();
  readonly reservations: Reservations = new Reservations(this);
  private readonly disposables: vscode.Disposable[] = [];
  private readonly watchers = new Map<string, () => void>();
  private lastSandboxServers: ServerInfo[] = [];
  private readonly saidChanged = new Set<string>();
  private devicesData: DevicesData[] | undefined;
  private devicesClock: ReturnType<typeof setTimeout> | undefined;
  private devicesClockOnly = false;
  private readonly statusRefresh = new RefreshScheduler(() => void this.refreshStatus(), 500);
  /** Why the local daemon is not usable (the status bar's click and the Sandbox view's welcome say it). */
  sandboxProblem: { missing?: MissingToolError['missing']; message: string } | undefined;

  constructor(readonly context: vscode.ExtensionContext, connector: Connector) {
    this.localDaemon = new LocalDaemon(localDaemonSettings, (m) => this.output.info(m));
    this.cloudlets = new Cloudlets(connector, cloudletConfigStore, context.secrets, {
      url: () => this.localDaemon.ensure(autoStart()),
      credentials: () => {
        const password = this.localDaemon.readPassword();
        return password === undefined ? undefined : { username: 'admin', password, project: 'admin' };
      },
    }, (c) => this.output.call(c));
    const ms = debounceMs();
    this.views = {
      sandbox: new NodeTree('cloudlet.sandbox', () => this.loadSandbox(), ms),
      cloudlets: new NodeTree('cloudlet.cloudlets', () => this.loadCloudlets(), ms),
      overlays: new NodeTree('cloudlet.overlays', () => this.loadOverlays(), ms),
      devices: new NodeTree('cloudlet.devices', () => this.loadDevices(), ms),
    };
    this.overlayPanels = new OverlayPanels(context.extensionUri);
    this.serverPanels = new ServerPanels(context.extensionUri);
    this.status = vscode.window.createStatusBarItem('cloudlet.sandboxStatus', vscode.StatusBarAlignment.Left, 50);
    this.status.name = 'Cloudlet Sandbox';
    this.status.command = 'cloudlet.focusSandbox';
    this.status.text = '$(vm-outline) Sandbox';
    this.status.show();
    this.disposables.push(this.output, ...Object.values(this.views), this.overlayPanels, this.serverPanels, this.status, this.logs, this.reservations,
      this.views.sandbox.onDidLoad((l) => this.updateStatus(l)),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('cloudlet.cloudlets')) { this.cloudlets.forget(); this.watchAll(); this.refresh('cloudlets', true); this.refresh('devices', true); this.reservations.reload(); }
        if (e.affectsConfiguration('cloudlet.localDaemon') || e.affectsConfiguration('cloudlet.cliPath') || e.affectsConfiguration('cloudlet.nodePath')) {
          this.cloudlets.forget(LOCAL); this.watchAll(); this.refresh(undefined, true);
        }
      }));
  }

  session(name: string): Promise<CloudletSession> { return this.cloudlets.session(name); }

  /** Refresh one view or all; `now` skips the debounce (user asked). */
  refresh(view?: ViewName, now = false): void {
    if (!view || view === 'devices') this.devicesClockOnly = false;
    for (const [name, tree] of Object.entries(this.views)) {
      if (view && name !== view) continue;
      if (now) tree.refreshNow(); else tree.request();
    }
  }

  /** (Re)connects the event streams of the local daemon and every configured cloudlet. */
  watchAll(): void {
    const names = [LOCAL, ...this.cloudlets.list().map((c) => c.name)];
    for (const [n, stop] of this.watchers) if (!names.includes(n)) { stop(); this.watchers.delete(n); }
    for (const n of names) {
      this.watchers.get(n)?.();
      this.watchers.delete(n);
      this.watch(n, 0);
    }
  }

  private watch(name: string, attempt: number): void {
    let stopped = false;
    let stopStream: (() => void) | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => { stopped = true; stopStream?.(); if (timer) clearTimeout(timer); };
    this.watchers.set(name, stop);
    const retry = () => {
      if (stopped) return;
      const delay = Math.min(60000, 2000 * 2 ** Math.min(attempt, 5));
      timer = setTimeout(() => { if (!stopped && this.watchers.get(name) === stop) this.watch(name, attempt + 1); }, delay);
    };
    this.session(name).then((s) => {
      if (stopped) return;
      // Reconnected after the stream broke (a daemon restart, a network gap): what changed meanwhile
      // sent no events, so the views of this cloudlet list everything again.
      if (attempt > 0) {
        this.output.info(`event stream of ${name} is back: listing again`);
        for (const v of (name === LOCAL ? ['sandbox', 'overlays'] : ['cloudlets', 'devices']) as ViewName[]) this.views[v].request();
        if (name === LOCAL) this.statusRefresh.request();
      }
      stopStream = s.watchEvents((e) => {
        attempt = 0;
        for (const v of viewsForTopic(e.topic, name === LOCAL ? 'local' : 'remote')) {
          if (v === 'devices') this.devicesClockOnly = false;  // a real change: fetch again
          this.views[v].request();
        }
        if (name !== LOCAL && (e.topic === 'leases' || e.topic === 'devices')) this.reservations.reload();
        // The status bar follows the sandbox even while its view is hidden (event-driven, debounced).
        if (name === LOCAL && e.topic === 'servers' && !this.views.sandbox.view.visible) this.statusRefresh.request();
      }, (err) => {
        this.output.warn(`event stream of ${name} ended: ${classifyError(err).message}`);
        // a token expired or the daemon restarted: a new session next time
        this.cloudlets.forget(name);
        retry();
      });
    }, () => retry());
  }

  private async loadSandbox(): Promise<Loaded> {
    try {
      const s = await this.session(LOCAL);
      const [images, servers] = await Promise.all([s.listImages(), s.listServers()]);
      this.lastSandboxServers = servers;
      this.setSandboxProblem(undefined);
      walkthroughDone('setup');
      if (images.some(isBaseImage)) walkthroughDone('base');
      const nodes = sandboxNodes(images, servers);
      return { nodes, condition: nodes.length ? 'ok' : 'empty' };
    } catch (e) {
      this.cloudlets.forget(LOCAL);
      const c = conditionOf(e);
      this.setSandboxProblem({ missing: e instanceof MissingToolError ? e.missing : undefined, message: c.error });
      // A missing Node/CLI shows the welcome content (install hint, settings); other failures a node with Retry.
      return { nodes: c.condition === 'noDaemon' ? [] : [messageNode('local', `${c.error} (click to retry)`, { icon: 'warning', retry: true })], ...c };
    }
  }

  private async loadCloudlets(): Promise<Loaded> {
    const configs = this.cloudlets.list();
    if (!configs.length) return { nodes: [], condition: 'empty' };
    const entries: CloudletEntry[] = await Promise.all(configs.map(async (c): Promise<CloudletEntry> => {
      try {
        const s = await this.session(c.name);
        const [images, servers] = await Promise.all([s.listImages(), s.listServers()]);
        return { name: c.name, url: c.url, condition: 'ok', images, servers };
      } catch (e) {
        this.cloudlets.forget(c.name);
        const r = refusalOf(e);
        // A changed certificate is said once per window, loudly (a modal), not only in the tree.
        if (r?.problem === 'changed' && !this.saidChanged.has(c.name)) { this.saidChanged.add(c.name); void sayChanged(r, c.name); }
        return { name: c.name, url: c.url, ...conditionOf(e) };
      }
    }));
    return { nodes: cloudletNodes(entries), condition: 'ok' };
  }

  /** The Devices view: devices, the caller's leases on them and their containers, per configured cloudlet offering devices. */
  private async loadDevices(): Promise<Loaded> {
    const recompute = this.devicesClockOnly;
    this.devicesClockOnly = false;
    const configs = this.cloudlets.list();
    if (!configs.length) { this.devicesData = []; return { nodes: [], condition: 'empty' }; }
    // The minute tick only recomputes "time left" from what was fetched last: no API call.
    if (!recompute || !this.devicesData) {
      this.devicesData = await Promise.all(configs.map(async (c): Promise<DevicesData> => {
        try {
          const d = (await this.session(c.name)).devices?.();
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
    const groups: DeviceGroup[] = this.devicesData.map((g) => ({ cloudlet: g.cloudlet, url: g.url, error: g.error, noService: g.noService,
      nodes: g.data ? deviceNodes({ cloudlet: g.cloudlet, ...g.data, now }) : undefined }));
    const live = this.devicesData.some((g) => g.data?.leases.some((l) => l.status === 'ACTIVE' || l.status === 'PENDING' || l.status === 'STARTING'));
    if (this.devicesClock) clearTimeout(this.devicesClock);
    this.devicesClock = live ? setTimeout(() => { this.devicesClockOnly = true; this.views.devices.request(); }, 60_000) : undefined;
    const nodes = devicesViewNodes(groups);
    return { nodes, condition: nodes.length ? 'ok' : 'empty' };
  }

  private async loadOverlays(): Promise<Loaded> {
    try {
      const s = await this.session(LOCAL);
      const overlays = await s.listOverlays();
      const nodes = overlayNodes(overlays);
      return { nodes, condition: nodes.length ? 'ok' : 'empty' };
    } catch (e) {
      const c = conditionOf(e);
      return { nodes: c.condition === 'noDaemon' ? [] : [messageNode('overlays', `${c.error} (click to retry)`, { icon: 'warning', retry: true })], ...c };
    }
  }

  private setSandboxProblem(p: Ext['sandboxProblem']): void {
    this.sandboxProblem = p;
    // Picks the Sandbox view's welcome that names the missing tool (package.json viewsWelcome).
    void vscode.commands.executeCommand('setContext', 'cloudlet.missingTool', p?.missing ?? '');
  }

  private async refreshStatus(): Promise<void> {
    try {
      this.lastSandboxServers = await (await this.session(LOCAL)).listServers();
      this.updateStatus({ nodes: [], condition: 'ok' });
    } catch (e) {
      this.setSandboxProblem({ missing: e instanceof MissingToolError ? e.missing : undefined, message: conditionOf(e).error });
      this.updateStatus({ nodes: [], ...conditionOf(e) });
    }
  }

  private updateStatus(l: Loaded): void {
    const st = sandboxStatus(l.condition, l.condition === 'ok' || l.condition === 'empty' ? this.lastSandboxServers : []);
    this.status.text = st.text;
    this.status.tooltip = st.tooltip;
    this.status.command = l.condition === 'unreachable' || l.condition === 'noDaemon' ? 'cloudlet.showDaemonStatus' : 'cloudlet.focusSandbox';
  }

  async dispose(): Promise<void> {
    for (const stop of this.watchers.values()) stop();
    this.watchers.clear();
    this.statusRefresh.dispose();
    if (this.devicesClock) clearTimeout(this.devicesClock);
    for (const d of this.disposables) d.dispose();
    await this.leaveSandboxes();
    await this.localDaemon.stop();
  }

  /** On window close: running sandbox VMs keep running or are paused (cloudlet.sandbox.onWindowClose), and the log says which. */
  private async leaveSandboxes(): Promise<void> {
    const running = this.lastSandboxServers.filter((x) => x.status === 'ACTIVE');
    if (!running.length) return;
    if (onWindowClose() !== 'pause') {
      this.output.info(`window closing: ${running.map((x) => x.name).join(', ')} keep running (cloudlet.sandbox.onWindowClose = keepRunning)`);
      return;
    }
    try {
      const s = await Promise.race([this.session(LOCAL), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timed out')), 2000))]);
      await Promise.all(running.map((x) => s.pause(x.id)));
      this.output.info(`window closing: paused ${running.map((x) => x.name).join(', ')} (cloudlet.sandbox.onWindowClose = pause)`);
    } catch (e) {
      this.output.warn(`window closing: could not pause the sandbox VMs: ${classifyError(e).message}`);
    }
  }
}
