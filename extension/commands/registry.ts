/**
 * The one place commands are registered. Every handler is wrapped: the call is logged, an error is
 * shown to the user with the actions that fit (Retry, Update Credentials, Show Log, Open Settings)
 * instead of being swallowed, and a cancelled job is reported as such.
 */
import * as vscode from 'vscode';
import type { Ext } from '../ext';
import { classifyError, type ShownError } from '../state/errors';

export type Handler = (ext: Ext, ...args: any[]) => unknown;
export interface CommandDef { id: string; run: Handler }

/** Shows an error with its actions; `retry` re-runs what failed. Returns the shown error. */
export async function showError(ext: Ext, e: unknown, opts: { where?: string; cloudlet?: string; retry?: () => unknown } = {}): Promise<ShownError> {
  const shown = classifyError(e, opts.where);
  ext.output.error(`${opts.where ? opts.where + ': ' : ''}${shown.message}`);
  const actions = shown.actions.filter((a) => a !== 'Retry' || opts.retry);
  const show = shown.severity === 'info' ? vscode.window.showInformationMessage : shown.severity === 'warning' ? vscode.window.showWarningMessage : vscode.window.showErrorMessage;
  const shownAt = shown.modal ? show(shown.message, { modal: true }, ...actions) : show(shown.message, ...actions);
  void Promise.resolve(shownAt).then(async (choice) => {
    if (choice === 'Retry') { if (opts.cloudlet) ext.cloudlets.forget(opts.cloudlet); await opts.retry?.(); }
    else if (choice === 'Update Credentials') await vscode.commands.executeCommand('cloudlet.updateCredentials', opts.cloudlet);
    else if (choice === 'Show Log') ext.output.channel.show(true);
    else if (choice === 'Trust Certificate...') await vscode.commands.executeCommand('cloudlet.trustCertificate', opts.cloudlet);
    else if (choice === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'cloudlet.');
  });
  return shown;
}

export function registerCommands(ext: Ext, groups: CommandDef[][]): vscode.Disposable[] {
  const seen = new Set<string>();
  const out: vscode.Disposable[] = [];
  for (const def of groups.flat()) {
    if (seen.has(def.id)) throw new Error(`command ${def.id} registered twice`);
    seen.add(def.id);
    const run = async (...args: any[]): Promise<unknown> => {
      ext.output.info(`command ${def.id}`);
      try {
        return await def.run(ext, ...args);
      } catch (e) {
        if ((e as Error)?.name === 'Dismissed') return undefined;
        const cloudlet = typeof (e as { cloudlet?: unknown })?.cloudlet === 'string' ? (e as { cloudlet: string }).cloudlet : undefined;
        await showError(ext, e, { where: def.id.replace(/^cloudlet\./, ''), cloudlet, retry: () => run(...args) });
        return undefined;
      }
    };
    out.push(vscode.commands.registerCommand(def.id, run));
  }
  return out;
}

/** Attaches the cloudlet name to an error, so "Update Credentials" knows which one. */
export function tagCloudlet<T>(cloudlet: string, p: Promise<T>): Promise<T> {
  return p.catch((e) => {
    if (e && typeof e === 'object') try { (e as { cloudlet?: string }).cloudlet = cloudlet; } catch { /* frozen */ }
    throw e;
  });
}
