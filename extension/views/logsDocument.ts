/**
 * Container logs as read-only documents (scheme `cloudlet-logs`): the editor shows what the
 * daemon's Zun logs call returned; opening the same container again fetches fresh logs.
 */
import * as vscode from 'vscode';

export const LOGS_SCHEME = 'cloudlet-logs';

export class LogsDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(LOGS_SCHEME, this);

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '(no logs loaded)\n';
  }

  /** Opens (or refreshes) the logs of one container as a read-only document. */
  async show(cloudlet: string, container: { uuid: string; name: string }, text: string): Promise<vscode.TextEditor> {
    const uri = vscode.Uri.from({ scheme: LOGS_SCHEME, path: `/${cloudlet}/${container.name}.log`, query: container.uuid });
    this.texts.set(uri.toString(), text || '(the container wrote nothing yet)\n');
    this.changed.fire(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    return vscode.window.showTextDocument(doc, { preview: false });
  }

  dispose(): void { this.registration.dispose(); this.changed.dispose(); }
}
