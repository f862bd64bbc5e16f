/**
 * Extension entry. Activated by the Cloudlets views and the commands only (package.json
 * activationEvents are implicit for contributed views and commands: no `*`). Activation does no
 * network work itself: the views load when shown, the event streams connect in the background.
 */
import * as vscode from 'vscode';
import { Ext } from './ext';
import { connect } from './clientAdapter';
import { commandGroups } from './commands';
import { registerCommands } from './commands/registry';
import { registerYamlQuickFix } from './commands/sandbox';

let current: Ext | undefined;

/** What other parts (publishing, devices) and the tests reach through `extension.exports`. */
export interface CloudletExtensionApi {
  ext: Ext;
}

export function activate(context: vscode.ExtensionContext): CloudletExtensionApi {
  const t0 = Date.now();
  const ext = new Ext(context, connect);
  current = ext;
  context.subscriptions.push(...registerCommands(ext, commandGroups), registerYamlQuickFix(ext));
  // The Overlay panel's Publish button runs the same command as the tree's inline action.
  ext.overlayPanels.publish.handler = async (panel) => {
    if (panel.overlayId) await vscode.commands.executeCommand('cloudlet.publishOverlay', { overlayId: panel.overlayId });
  };
  ext.watchAll();
  ext.output.info(`activated in ${Date.now() - t0} ms`);
  return { ext };
}

export async function deactivate(): Promise<void> {
  const ext = current;
  current = undefined;
  await ext?.dispose();
}
