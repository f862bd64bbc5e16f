/** The Server panel: synthesis and handoff timeline with phases, bytes and downtime. */
import * as vscode from 'vscode';
import type { HostMessage, ServerPanelState, WebviewMessage } from '../protocol';
import { Panel } from './panel';

export class ServerPanel extends Panel<ServerPanelState> {
  onRefresh: (() => void) | undefined;
  /** Open in Browser, Hand Off, Delete: the same commands as the tree's. */
  onAction: ((action: 'open' | 'handoff' | 'delete') => void) | undefined;

  constructor(extensionUri: vscode.Uri, initial: ServerPanelState) {
    super('server', 'cloudlet.server', `Server: ${initial.name}`, extensionUri, initial);
  }

  protected message(s: ServerPanelState): HostMessage { return { type: 'server/state', state: s }; }

  protected handle(m: WebviewMessage): void {
    if (m.type === 'server/refresh') this.onRefresh?.();
    else if (m.type === 'server/action') this.onAction?.(m.action);
  }
}

/** One Server panel per (cloudlet, server). A handoff moves the panel to the destination's key. */
export class ServerPanels {
  private readonly panels = new Map<string, ServerPanel>();
  constructor(private readonly extensionUri: vscode.Uri) {}

  static key(cloudlet: string, serverId: string): string { return `${cloudlet}/${serverId}`; }

  open(cloudlet: string, initial: ServerPanelState): ServerPanel {
    const key = ServerPanels.key(cloudlet, initial.serverId);
    const existing = this.panels.get(key);
    if (existing && !existing.isDisposed) { existing.reveal(); return existing; }
    const p = new ServerPanel(this.extensionUri, initial);
    this.panels.set(key, p);
    p.onDispose(() => { for (const [k, v] of this.panels) if (v === p) this.panels.delete(k); });
    return p;
  }

  get(cloudlet: string, serverId: string): ServerPanel | undefined { return this.panels.get(ServerPanels.key(cloudlet, serverId)); }
  alias(cloudlet: string, serverId: string, p: ServerPanel): void { this.panels.set(ServerPanels.key(cloudlet, serverId), p); }
  all(): ServerPanel[] { return [...new Set(this.panels.values())]; }
  dispose(): void { for (const p of new Set(this.panels.values())) p.dispose(); }
}
