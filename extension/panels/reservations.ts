/** The Reservations panel (one), loaded from every configured cloudlet that offers devices. */
import type * as vscode from 'vscode';
import type { Cloudlets } from '../cloudlets';
import { ReservationsPanel } from './reservationsPanel';
import { classifyError } from '../state/errors';
import { reservationTimeline } from '../state/devicesTree';
import { timelineWindow } from '../state/devicesView';
import { RefreshScheduler } from '../state/refresh';
import type { ReservationsPanelState } from '../protocol';

export class Reservations implements vscode.Disposable {
  panel: ReservationsPanel | undefined;
  private readonly scheduler = new RefreshScheduler(() => void this.load(), 300);
  constructor(private readonly extensionUri: vscode.Uri, private readonly cloudlets: Cloudlets) {}

  open(): ReservationsPanel {
    if (this.panel && !this.panel.isDisposed) { this.panel.reveal(); this.reload(); return this.panel; }
    const p = new ReservationsPanel(this.extensionUri);
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
    for (const c of this.cloudlets.list()) {
      try {
        const d = (await this.cloudlets.session(c.name)).devices?.();
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
