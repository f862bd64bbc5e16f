/** The Reservations panel: leases per device on a time axis, one axis per cloudlet that offers devices. */
import * as vscode from 'vscode';
import type { HostMessage, ReservationsPanelState, WebviewMessage } from '../protocol';
import { Panel } from './panel';

export class ReservationsPanel extends Panel<ReservationsPanelState> {
  onRefresh: (() => void) | undefined;

  constructor(extensionUri: vscode.Uri) {
    super('reservations', 'cloudlet.reservations', 'Reservations', extensionUri, { cloudlets: [], loading: true, updatedAt: Date.now() });
  }

  protected message(s: ReservationsPanelState): HostMessage { return { type: 'reservations/state', state: s }; }

  protected async handle(m: WebviewMessage): Promise<void> {
    if (m.type === 'reservations/refresh') this.onRefresh?.();
    else if (m.type === 'reservations/reserve') await vscode.commands.executeCommand('cloudlet.reserveDevice');
  }
}
