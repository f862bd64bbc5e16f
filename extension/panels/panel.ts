/**
 * A webview panel that shows one piece of state: the host computes the state (extension/state/panels.ts)
 * and sends it whole after every change; the webview (webview/main.ts) renders it. Messages are typed
 * by extension/protocol.ts. Content-Security-Policy with a nonce; colours from VS Code's CSS variables.
 */
import * as crypto from 'crypto';
import * as vscode from 'vscode';
import { isWebviewMessage, type HostMessage, type PanelKind, type WebviewMessage } from '../protocol';

export function nonce(): string {
  return crypto.randomBytes(18).toString('base64').replace(/[^A-Za-z0-9]/g, '');
}

export function panelHtml(webview: vscode.Webview, extensionUri: vscode.Uri, kind: PanelKind, title: string): string {
  const n = nonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const css = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'panel.css'));
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `style-src ${webview.cspSource} 'nonce-${n}'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${n}'`,
  ].join('; ');
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]!));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${css}" nonce="${n}">
<title>${esc(title)}</title>
</head>
<body data-panel="${kind}">
<main id="root" aria-live="polite"><p class="muted">Loading…</p></main>
<script nonce="${n}" src="${script}"></script>
</body>
</html>`;
}

export abstract class Panel<S> implements vscode.Disposable {
  readonly panel: vscode.WebviewPanel;
  protected state: S;
  private ready = false;
  private disposed = false;
  private readonly disposables: vscode.Disposable[] = [];
  readonly onDispose: vscode.Event<void>;
  private readonly disposeEmitter = new vscode.EventEmitter<void>();

  constructor(readonly kind: PanelKind, viewType: string, title: string, extensionUri: vscode.Uri, initial: S) {
    this.state = initial;
    this.panel = vscode.window.createWebviewPanel(viewType, title, { viewColumn: vscode.ViewColumn.Active, preserveFocus: false }, {
      enableScripts: true,
      retainContextWhenHidden: false,
      localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')],
    });
    this.panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', kind === 'overlay' ? 'overlay.svg' : kind === 'reservations' ? 'cloudlet.svg' : 'server.svg');
    this.panel.webview.html = panelHtml(this.panel.webview, extensionUri, kind, title);
    this.onDispose = this.disposeEmitter.event;
    this.disposables.push(
      this.panel.webview.onDidReceiveMessage((m: unknown) => { if (isWebviewMessage(m)) void this.receive(m); }),
      this.panel.onDidDispose(() => this.dispose()),
      // A webview hidden then shown again is reloaded (retainContextWhenHidden false): it sends "ready" again.
    );
  }

  get current(): S { return this.state; }
  get isDisposed(): boolean { return this.disposed; }

  update(next: S): void {
    this.state = next;
    this.post();
  }

  reveal(): void { this.panel.reveal(undefined, false); }

  protected abstract message(s: S): HostMessage;
  protected abstract handle(m: WebviewMessage): Promise<void> | void;

  private post(): void {
    if (this.ready && !this.disposed) void this.panel.webview.postMessage(this.message(this.state));
  }

  private async receive(m: WebviewMessage): Promise<void> {
    if (m.type === 'ready') { this.ready = true; this.post(); return; }
    if (m.type === 'copy') { await vscode.env.clipboard.writeText(m.text); void vscode.window.showInformationMessage(`Copied ${m.text}`); return; }
    await this.handle(m);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeEmitter.fire();
    for (const d of this.disposables) d.dispose();
    this.panel.dispose();
    this.disposeEmitter.dispose();
  }
}
