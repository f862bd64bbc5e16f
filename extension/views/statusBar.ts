/**
 * The sandbox's status bar item: what the local daemon runs, from the Sandbox view's loads, and
 * while that view is hidden from its own (event-driven, debounced) listing of the servers.
 */
import * as vscode from 'vscode';
import type { ServerInfo } from '../api';
import { LOCAL, type Cloudlets } from '../cloudlets';
import type { Loaded } from './nodeTree';
import { conditionOf, type SandboxOutcome } from './loaders';
import { sandboxStatus } from '../state/tree';
import { RefreshScheduler } from '../state/refresh';

export class SandboxStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  /** The local servers of the last successful listing. */
  servers: ServerInfo[] = [];
  private readonly scheduler = new RefreshScheduler(() => void this.reload(), 500);

  /** `report`: the outcome of the bar's own listing (as the Sandbox view's loader reports it). */
  constructor(private readonly cloudlets: Cloudlets, private readonly report: (o: SandboxOutcome) => void) {
    this.item = vscode.window.createStatusBarItem('cloudlet.sandboxStatus', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'Cloudlet Sandbox';
    this.item.command = 'cloudlet.focusSandbox';
    this.item.text = '$(vm-outline) Sandbox';
    this.item.show();
  }

  /** The local servers changed while the Sandbox view is hidden: list them soon. */
  request(): void { this.scheduler.request(); }

  private async reload(): Promise<void> {
    try {
      this.servers = await (await this.cloudlets.session(LOCAL)).listServers();
      this.update({ nodes: [], condition: 'ok' });
    } catch (e) {
      const c = conditionOf(e);
      this.report({ error: e, message: c.error });
      this.update({ nodes: [], ...c });
    }
  }

  /** Shows the outcome of a load of the Sandbox view (or of `reload`). */
  update(l: Loaded): void {
    const st = sandboxStatus(l.condition, l.condition === 'ok' || l.condition === 'empty' ? this.servers : []);
    this.item.text = st.text;
    this.item.tooltip = st.tooltip;
    this.item.command = l.condition === 'unreachable' || l.condition === 'noDaemon' ? 'cloudlet.showDaemonStatus' : 'cloudlet.focusSandbox';
  }

  dispose(): void { this.scheduler.dispose(); this.item.dispose(); }
}
