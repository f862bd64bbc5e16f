/**
 * One TreeDataProvider for every view: it asks a loader for NodeDesc (extension/state/tree.ts) and
 * turns them into TreeItems. Refresh is event-driven and debounced (RefreshScheduler), and paused
 * while the view is hidden. The view's condition (ok, empty, unreachable ...) goes to a context key
 * so views-welcome content can say what is wrong and offer Retry.
 */
import * as vscode from 'vscode';
import { accessibleLabel, type NodeDesc, type ViewCondition } from '../state/tree';
import { RefreshScheduler } from '../state/refresh';

export interface Loaded { nodes: NodeDesc[]; condition: ViewCondition; error?: string }

export class NodeTree implements vscode.TreeDataProvider<NodeDesc>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<NodeDesc | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  readonly scheduler: RefreshScheduler;
  readonly view: vscode.TreeView<NodeDesc>;
  private roots: Promise<Loaded> | undefined;
  last: Loaded = { nodes: [], condition: 'loading' };
  private readonly disposables: vscode.Disposable[] = [];
  private readonly loadedEmitter = new vscode.EventEmitter<Loaded>();
  readonly onDidLoad = this.loadedEmitter.event;

  constructor(readonly id: string, private readonly load: () => Promise<Loaded>, debounceMs: number) {
    this.scheduler = new RefreshScheduler(() => { this.roots = undefined; this.changed.fire(undefined); }, debounceMs);
    this.view = vscode.window.createTreeView(id, { treeDataProvider: this, showCollapseAll: id !== 'cloudlet.sandbox' });
    this.scheduler.setVisible(this.view.visible);
    this.disposables.push(this.view, this.changed, this.loadedEmitter,
      this.view.onDidChangeVisibility((e) => this.scheduler.setVisible(e.visible)));
    void vscode.commands.executeCommand('setContext', `${id}.condition`, 'loading');
  }

  /** Something changed on a daemon: refresh soon (debounced), or when next shown. */
  request(): void { this.scheduler.request(); }
  /** Refresh now. */
  refreshNow(): void { this.scheduler.now(); }

  /** Current root nodes (loads them if needed). */
  async current(): Promise<Loaded> {
    this.roots ??= this.load().catch((e) => ({ nodes: [], condition: 'unreachable' as const, error: String(e?.message ?? e) }));
    const r = await this.roots;
    if (r !== this.last) {
      this.last = r;
      void vscode.commands.executeCommand('setContext', `${this.id}.condition`, r.condition);
      this.loadedEmitter.fire(r);
    }
    return r;
  }

  getTreeItem(n: NodeDesc): vscode.TreeItem {
    const state = n.collapsible === 'none' ? vscode.TreeItemCollapsibleState.None
      : n.collapsible === 'expanded' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed;
    const item = new vscode.TreeItem(n.label, state);
    item.id = n.id;
    item.description = n.description;
    item.tooltip = n.tooltip;
    item.accessibilityInformation = { label: accessibleLabel(n) };
    item.contextValue = n.contextValue;
    item.iconPath = new vscode.ThemeIcon(n.icon, n.iconColor ? new vscode.ThemeColor(n.iconColor) : undefined);
    if (n.command) item.command = { command: n.command.id, title: n.command.title, arguments: [n] };
    return item;
  }

  async getChildren(n?: NodeDesc): Promise<NodeDesc[]> {
    if (n) return n.children ?? [];
    const r = await this.current();
    // An empty list lets views-welcome content show (it explains unreachable / empty and offers Retry).
    return r.nodes;
  }

  getParent(): undefined { return undefined; }

  dispose(): void {
    this.scheduler.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
