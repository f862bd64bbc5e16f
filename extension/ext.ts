/**
 * Everything the commands share: output channel, local daemon, cloudlet sessions, the views, the
 * panels and the status bar. Created once in activate(); commands receive it as their first argument.
 * What the views show is loaded in views/loaders.ts; the event streams live in eventWatcher.ts.
 */
import * as vscode from 'vscode';
import type { ChangeEvent, CloudletSession } from './api';
import { Cloudlets, LOCAL, type Connector } from './cloudlets';
import { EventWatcher } from './eventWatcher';
import { LocalDaemon, MissingToolError } from './localDaemon';
import { Output } from './output';
import { NodeTree } from './views/nodeTree';
import { DevicesLoader, loadCloudlets, loadOverlays, loadSandbox, type SandboxOutcome, type ViewName } from './views/loaders';
import { SandboxStatusBar } from './views/statusBar';
import { OverlayPanels } from './panels/overlayPanel';
import { ServerPanels } from './panels/serverPanel';
import { Reservations } from './panels/reservations';
import { viewsForTopic } from './state/refresh';
import { isBaseImage } from './state/tree';
import { classifyError } from './state/errors';
import { autoStart, cloudletConfigStore, debounceMs, localDaemonSettings, onWindowClose } from './settings';
import { LogsDocuments } from './views/logsDocument';
import { refusalOf, sayChanged } from './commands/trust';
import { walkthroughDone } from './walkthrough';

export type { ViewName } from './views/loaders';

export class Ext implements vscode.Disposable {
  readonly output = new Output();
  readonly localDaemon: LocalDaemon;
  readonly cloudlets: Cloudlets;
  readonly views: Record<ViewName, NodeTree>;
  readonly overlayPanels: OverlayPanels;
  readonly serverPanels: ServerPanels;
  readonly status: SandboxStatusBar;
  readonly logs = new LogsDocuments();
  readonly reservations: Reservations;
  private readonly devices: DevicesLoader;
  private readonly events: EventWatcher;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly saidChanged = new Set<string>();
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
    this.status = new SandboxStatusBar(this.cloudlets, (o) => this.sandboxLoaded(o));
    this.devices = new DevicesLoader(this.cloudlets, () => this.views.devices.request());
    const ms = debounceMs();
    this.views = {
      sandbox: new NodeTree('cloudlet.sandbox', () => loadSandbox(this.cloudlets, (o) => this.sandboxLoaded(o)), ms),
      cloudlets: new NodeTree('cloudlet.cloudlets', () => loadCloudlets(this.cloudlets, (name, e) => this.cloudletFailed(name, e)), ms),
      overlays: new NodeTree('cloudlet.overlays', () => loadOverlays(this.cloudlets), ms),
      devices: new NodeTree('cloudlet.devices', () => this.devices.load(), ms),
    };
    this.overlayPanels = new OverlayPanels(context.extensionUri);
    this.serverPanels = new ServerPanels(context.extensionUri);
    this.reservations = new Reservations(context.extensionUri, this.cloudlets);
    this.events = new EventWatcher({
      names: () => [LOCAL, ...this.cloudlets.list().map((c) => c.name)],
      session: (name) => this.cloudlets.session(name),
      forget: (name) => this.cloudlets.forget(name),
    }, (name, e) => this.onEvent(name, e), (m) => this.output.warn(m), (name) => this.reconnected(name));
    this.disposables.push(this.output, ...Object.values(this.views), this.overlayPanels, this.serverPanels, this.status, this.logs, this.reservations,
      this.views.sandbox.onDidLoad((l) => this.status.update(l)),
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
    if (!view || view === 'devices') this.devices.changed();
    for (const [name, tree] of Object.entries(this.views)) {
      if (view && name !== view) continue;
      if (now) tree.refreshNow(); else tree.request();
    }
  }

  /** (Re)connects the event streams of the local daemon and every configured cloudlet. */
  watchAll(): void { this.events.watchAll(); }

  private sandboxLoaded(o: SandboxOutcome): void {
    if ('servers' in o) this.status.servers = o.servers;
    if ('servers' in o && o.images) {
      walkthroughDone('setup');
      if (o.images.some(isBaseImage)) walkthroughDone('base');
    }
    this.sandboxProblem = 'servers' in o ? undefined : { missing: o.error instanceof MissingToolError ? o.error.missing : undefined, message: o.message };
    // Picks the Sandbox view's welcome that names the missing tool (package.json viewsWelcome).
    void vscode.commands.executeCommand('setContext', 'cloudlet.missingTool', this.sandboxProblem?.missing ?? '');
  }

  private cloudletFailed(name: string, e: unknown): void {
    const r = refusalOf(e);
    // A changed certificate is said once per window, loudly (a modal), not only in the tree.
    if (r?.problem === 'changed' && !this.saidChanged.has(name)) { this.saidChanged.add(name); void sayChanged(r, name); }
  }

  /** Reconnected after the stream broke (a daemon restart, a network gap): the views of that cloudlet list everything again. */
  private reconnected(name: string): void {
    this.output.info(`event stream of ${name} is back: listing again`);
    for (const v of (name === LOCAL ? ['sandbox', 'overlays'] : ['cloudlets', 'devices']) as ViewName[]) this.views[v].request();
    if (name === LOCAL) this.status.request();
  }

  private onEvent(name: string, e: ChangeEvent): void {
    for (const v of viewsForTopic(e.topic, name === LOCAL ? 'local' : 'remote')) {
      if (v === 'devices') this.devices.changed();  // a real change: fetch again
      this.views[v].request();
    }
    if (name !== LOCAL && (e.topic === 'leases' || e.topic === 'devices')) this.reservations.reload();
    // The status bar follows the sandbox even while its view is hidden (event-driven, debounced).
    if (name === LOCAL && e.topic === 'servers' && !this.views.sandbox.view.visible) this.status.request();
  }

  async dispose(): Promise<void> {
    this.events.dispose();
    this.devices.dispose();
    for (const d of this.disposables) d.dispose();
    await this.leaveSandboxes();
    await this.localDaemon.stop();
  }

  /** On window close: running sandbox VMs keep running or are paused (cloudlet.sandbox.onWindowClose), and the log says which. */
  private async leaveSandboxes(): Promise<void> {
    const running = this.status.servers.filter((x) => x.status === 'ACTIVE');
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
