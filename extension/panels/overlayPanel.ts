/** The Overlay panel: build progress, what the overlay is made of (chart), Publish (wired by the publishing work). */
import * as vscode from 'vscode';
import type { HostMessage, OverlayPanelState, WebviewMessage } from '../protocol';
import { Panel } from './panel';
import { chartSlices, initialOverlayState } from '../state/panels';

export type PublishHandler = (panel: OverlayPanel) => Promise<void>;

export class OverlayPanel extends Panel<OverlayPanelState> {
  /** Set by whoever runs the build, so the panel's Cancel button reaches it. */
  cancel: (() => void) | undefined;
  overlayId: string | undefined;

  constructor(extensionUri: vscode.Uri, title: string, private readonly publish: { handler?: PublishHandler }) {
    super('overlay', 'cloudlet.overlay', `Overlay: ${title}`, extensionUri, { ...initialOverlayState(title), canPublish: !!publish.handler });
  }

  protected message(s: OverlayPanelState): HostMessage { return { type: 'overlay/state', state: s, chart: chartSlices(s.composition) }; }

  protected async handle(m: WebviewMessage): Promise<void> {
    if (m.type === 'overlay/cancel') this.cancel?.();
    else if (m.type === 'overlay/publish') {
      if (this.publish.handler) await this.publish.handler(this);
      else void vscode.window.showInformationMessage('Publishing is not available yet.');
    }
  }
}

/** One Overlay panel per overlay (or per running build). */
export class OverlayPanels {
  private readonly panels = new Map<string, OverlayPanel>();
  /** The publishing work sets this; the panel's Publish button calls it. */
  readonly publish: { handler?: PublishHandler } = {};

  constructor(private readonly extensionUri: vscode.Uri) {}

  open(key: string, title: string): OverlayPanel {
    const existing = this.panels.get(key);
    if (existing && !existing.isDisposed) { existing.reveal(); return existing; }
    const p = new OverlayPanel(this.extensionUri, title, this.publish);
    this.panels.set(key, p);
    p.onDispose(() => { if (this.panels.get(key) === p) this.panels.delete(key); });
    return p;
  }

  /** Re-keys a build's panel under its overlay id once the build produced one. */
  rekey(from: string, to: string): void {
    const p = this.panels.get(from);
    if (!p) return;
    this.panels.delete(from);
    this.panels.set(to, p);
  }

  get(key: string): OverlayPanel | undefined { return this.panels.get(key); }
  all(): OverlayPanel[] { return [...this.panels.values()]; }
  dispose(): void { for (const p of this.panels.values()) p.dispose(); }
}
