/** Pickers and the job runner the command groups share. */
import * as vscode from 'vscode';
import type { CloudletSession, ImageInfo, JobEnd, OverlayInfo, ServerInfo } from '../api';
import type { ProgressEvent } from '../../sandbox/client/types';
import type { Ext } from '../ext';
import { LOCAL } from '../cloudlets';
import type { NodeDesc } from '../state/tree';
import { formatBytes, isBaseImage, shortId } from '../state/tree';
import { CloudletError, jobEndError } from '../../sandbox/client';
import { tagCloudlet } from './registry';

export function isNode(x: unknown): x is NodeDesc {
  return !!x && typeof x === 'object' && typeof (x as NodeDesc).kind === 'string' && typeof (x as NodeDesc).contextValue === 'string';
}

export async function sessionOf(ext: Ext, cloudlet: string): Promise<CloudletSession> {
  return tagCloudlet(cloudlet, ext.session(cloudlet));
}

/** Stops the command quietly when the user dismissed a picker. */
export class Dismissed extends Error { constructor() { super('dismissed'); this.name = 'Dismissed'; } }
export function need<T>(x: T | undefined): T {
  if (x === undefined) throw new Dismissed();
  return x;
}

export async function pickCloudlet(ext: Ext, placeHolder: string, opts: { includeLocal?: boolean; exclude?: string } = {}): Promise<string> {
  const items: (vscode.QuickPickItem & { name: string })[] = [];
  if (opts.includeLocal && opts.exclude !== LOCAL) items.push({ label: 'local', description: 'the sandbox daemon on this machine', name: LOCAL });
  for (const c of ext.cloudlets.list()) if (c.name !== opts.exclude) items.push({ label: c.name, description: c.url, name: c.name });
  if (!items.length) {
    throw new CloudletError('NotFound', 'No cloudlet is configured', { hint: 'Run "Cloudlet: Add Cloudlet..." first' });
  }
  if (items.length === 1 && !opts.includeLocal) return items[0].name;
  return need(await vscode.window.showQuickPick(items, { placeHolder, ignoreFocusOut: true }))!.name;
}

export async function pickBase(ext: Ext, cloudlet: string, placeHolder: string): Promise<ImageInfo> {
  const s = await sessionOf(ext, cloudlet);
  const bases = (await s.listImages()).filter(isBaseImage);
  if (!bases.length) throw new CloudletError('NotFound', `${cloudlet === LOCAL ? 'The sandbox' : cloudlet} has no base VM`, { hint: 'Import or create a base VM first' });
  if (bases.length === 1) return bases[0];
  const picked = await vscode.window.showQuickPick(bases.map((b) => ({ label: b.name, description: `${shortId(b.baseId)} ${formatBytes(b.size)}`, b })), { placeHolder, ignoreFocusOut: true });
  return need(picked).b;
}

export async function pickServer(ext: Ext, cloudlet: string, placeHolder: string, filter: (s: ServerInfo) => boolean = () => true): Promise<ServerInfo> {
  const s = await sessionOf(ext, cloudlet);
  const servers = (await s.listServers()).filter(filter);
  if (!servers.length) throw new CloudletError('NotFound', `No matching ${cloudlet === LOCAL ? 'sandbox VM' : 'server on ' + cloudlet}`);
  if (servers.length === 1) return servers[0];
  const picked = await vscode.window.showQuickPick(servers.map((x) => ({ label: x.name, description: `${x.status} ${shortId(x.id, 8)}`, x })), { placeHolder, ignoreFocusOut: true });
  return need(picked).x;
}

export async function pickOverlay(ext: Ext, placeHolder: string): Promise<OverlayInfo> {
  const s = await sessionOf(ext, LOCAL);
  const overlays = await s.listOverlays();
  if (!overlays.length) throw new CloudletError('NotFound', 'No overlay has been built yet', { hint: 'Run "Cloudlet: Build from Workspace" or "Cloudlet: Create VM Overlay"' });
  if (overlays.length === 1) return overlays[0];
  const picked = await vscode.window.showQuickPick(overlays.map((o) => ({
    label: o.name, description: [formatBytes(o.size), o.publishedRef].filter(Boolean).join(' · '), detail: `base ${shortId(o.baseId)}`, o,
  })), { placeHolder, ignoreFocusOut: true });
  return need(picked).o;
}

/**
 * Follows a daemon job in a progress notification with Cancel. Progress goes to `onProgress` too
 * (the panels). Resolves with the job's end; a cancel by the user cancels the job on the daemon.
 */
export async function runJob(s: CloudletSession, jobId: string | undefined, title: string, onProgress: (e: ProgressEvent) => void = () => {},
                             external?: { cancel?: () => void }): Promise<JobEnd> {
  if (!jobId) return { status: 'DONE' };
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
    const abort = new AbortController();
    const cancel = () => { if (!abort.signal.aborted) { abort.abort(); void s.cancelJob(jobId).catch((e) => { void vscode.window.showWarningMessage(`Could not cancel the job on the cloudlet (it may still be running): ${(e as Error).message}`); }); } };
    const sub = token.onCancellationRequested(cancel);
    if (external) external.cancel = cancel;
    let lastPct = 0;
    let lastPhase = '';
    try {
      const end = await s.watchJob(jobId, (e) => {
        onProgress(e);
        const pct = e.total ? Math.min(100, Math.floor(((e.done ?? 0) / e.total) * 100)) : undefined;
        const msg = `${e.phase}${e.message ? `: ${e.message}` : ''}${e.total ? ` (${formatBytes(e.done)} / ${formatBytes(e.total)})` : ''}`;
        if (e.phase !== lastPhase) { lastPhase = e.phase; lastPct = 0; }
        const inc = pct !== undefined && pct > lastPct ? pct - lastPct : undefined;
        if (pct !== undefined) lastPct = Math.max(lastPct, pct);
        progress.report({ message: msg, increment: inc });
      }, abort.signal);
      if (abort.signal.aborted && end.status !== 'DONE') return { status: 'CANCELLED', error: 'cancelled' } as JobEnd;
      return end;
    } catch (e) {
      if (abort.signal.aborted) return { status: 'CANCELLED', error: 'cancelled' } as JobEnd;
      throw e;
    } finally {
      sub.dispose();
      if (external) external.cancel = undefined;
    }
  });
}

/** Turns a failed or cancelled job into the error the registry shows, with the code the daemon failed it with. */
export function checkEnd(end: JobEnd, what: string): void {
  // fromJob: the daemon answered and ran the job; an "unreachable" fault names what the job could not reach.
  if (end.status !== 'DONE') throw Object.assign(jobEndError({ job: '', ...end }, what), { fromJob: true });
}

/** A walkthrough step done (extension/walkthrough.ts). */
export { walkthroughDone } from '../walkthrough';

export function missing(what: string): never {
  throw new CloudletError('NotFound', `${what} not found (it may have been removed; refresh the view)`);
}
