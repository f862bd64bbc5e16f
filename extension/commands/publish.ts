/**
 * One-click Publish: the Overlays tree item's inline action and the Overlay panel's button push an
 * overlay of the local daemon to the default registry and repository (cloudlet.registry.default) as
 * a daemon job, with progress and Cancel. Registry credentials live in SecretStorage
 * (`cloudlet.registry/HOST`), asked for when the registry refuses, never in settings or logs.
 */
import * as fs from 'fs';
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import type { Ext } from '../ext';
import type { JobEnd, OverlayInfo } from '../api';
import type { PublishJobResult } from '../../sandbox/client/publish';
import { checkEnd, isNode, need, pickOverlay, runJob, sessionOf } from './common';
import { LOCAL } from '../cloudlets';
import { CloudletError } from '../../sandbox/client';
import { registryCaFile, registryChosen, registryDefault } from '../settings';
import { isAuthError, overlayPublishEnded, overlayPublishing, parseRegistrySecret, publishReference, registryHostOf, registrySecretKey } from '../state/publish';
import { formatBytes } from '../state/tree';

async function askCredentials(ext: Ext, host: string, why?: string): Promise<{ username: string; password: string }> {
  const username = need(await vscode.window.showInputBox({ title: `Registry ${host}`, prompt: `${why ? why + ' — ' : ''}user name for ${host}`, ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : 'A user name is needed') }));
  const password = need(await vscode.window.showInputBox({ title: `Registry ${host}`, prompt: `Password or token of ${username} (kept in VS Code's secret storage)`, password: true, ignoreFocusOut: true }));
  const creds = { username: username.trim(), password };
  await ext.context.secrets.store(registrySecretKey(host), JSON.stringify(creds));
  ext.output.info(`registry credentials of ${creds.username} for ${host} stored in secret storage`);
  return creds;
}

/** First publish: where to, asked once and remembered (cloudlet.registry.default in user settings). */
async function askRegistry(): Promise<string> {
  const value = need(await vscode.window.showInputBox({ title: 'Publish: which registry?', prompt: 'OCI registry and repository to publish overlays to, HOST[:PORT]/REPOSITORY (remembered as cloudlet.registry.default)',
    placeHolder: 'registry.example.org/overlays', ignoreFocusOut: true,
    validateInput: (v) => (publishReference(v.trim(), 'x', '') ? undefined : 'HOST[:PORT]/REPOSITORY, e.g. registry.example.org/overlays or 127.0.0.1:5000/overlays') })).trim();
  await vscode.workspace.getConfiguration('cloudlet').update('registry.default', value, vscode.ConfigurationTarget.Global);
  return value;
}

function readCa(): string | undefined {
  const file = registryCaFile();
  if (!file) return undefined;
  try { return fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new CloudletError('BadInput', `cloudlet.registry.caFile: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Publishes one overlay of the local daemon; updates its Overlay panel when one is open. */
export async function publishOverlayFlow(ext: Ext, overlay: OverlayInfo): Promise<string> {
  const s = await sessionOf(ext, LOCAL);
  if (!s.publishOverlay) throw new CloudletError('BadInput', 'The local daemon cannot publish overlays');
  const target = registryChosen() ?? await askRegistry();
  const ref = publishReference(target, overlay.name, overlay.id);
  if (!ref) throw new CloudletError('BadInput', `cloudlet.registry.default is not a registry and repository: ${JSON.stringify(target)}`, { hint: 'set it to HOST[:PORT]/REPOSITORY, e.g. 127.0.0.1:5000/overlays' });
  const host = registryHostOf(ref);
  const ca = readCa();
  let creds = parseRegistrySecret(await ext.context.secrets.get(registrySecretKey(host)));
  const panel = ext.overlayPanels.get(overlay.id);
  let end: JobEnd = { status: 'ERROR' };
  for (let attempt = 0; attempt < 3; attempt++) {
    panel?.update(overlayPublishing(panel.current));
    let jobId: string;
    try {
      ({ jobId } = await s.publishOverlay(overlay.id, { reference: ref, ...(creds ?? {}), ...(ca ? { ca } : {}) }));
    } catch (e) {
      panel?.update(overlayPublishEnded(panel.current, { status: 'ERROR', error: (e as Error).message }));
      throw e;
    }
    const external: { cancel?: () => void } = {};
    if (panel) panel.cancel = () => external.cancel?.();
    end = await runJob(s, jobId, `Publishing ${overlay.name} to ${ref}`, (e) => panel?.update(overlayPublishing(panel.current, e)), external);
    if (panel) panel.cancel = undefined;
    if (isAuthError(end) && attempt < 2) {
      panel?.update(overlayPublishEnded(panel.current, end));
      creds = await askCredentials(ext, host, creds ? 'The registry refused these credentials' : 'The registry needs credentials');
      continue;
    }
    break;
  }
  const r = (end.result ?? {}) as Partial<PublishJobResult>;
  const reference = r.reference ?? `oci://${ref}`;
  panel?.update(overlayPublishEnded(panel.current, end, reference));
  ext.refresh('overlays', true);
  checkEnd(end, `Publishing ${overlay.name}`);
  const sent = r.segment_bytes ? ` (${formatBytes(r.segment_bytes.uploaded)} uploaded, ${formatBytes(r.segment_bytes.skipped + r.segment_bytes.mounted)} already there)` : '';
  void vscode.window.showInformationMessage(`Published ${overlay.name} as ${reference}${sent}.`, 'Copy Reference').then(async (c) => {
    if (c) { await vscode.env.clipboard.writeText(reference); }
  });
  return reference;
}

async function targetOverlay(ext: Ext, node: unknown, placeHolder: string, filter: (o: OverlayInfo) => boolean = () => true): Promise<OverlayInfo> {
  const s = await sessionOf(ext, LOCAL);
  if (isNode(node) && node.kind === 'overlay' && node.resourceId) return s.getOverlay(node.resourceId);
  if (node && typeof node === 'object' && typeof (node as { overlayId?: unknown }).overlayId === 'string') return s.getOverlay((node as { overlayId: string }).overlayId);
  const all = (await s.listOverlays()).filter(filter);
  if (!all.length) throw new CloudletError('NotFound', 'No overlay has been published yet', { hint: 'Publish one first (Cloudlet: Publish Overlay)' });
  if (all.length === 1) return all[0];
  const picked = await vscode.window.showQuickPick(all.map((o) => ({ label: o.name, description: o.publishedRef ?? '', o })), { placeHolder, ignoreFocusOut: true });
  return need(picked).o;
}

export const publishCommands: CommandDef[] = [
  {
    id: 'cloudlet.publishOverlay',
    async run(ext, node?: unknown) {
      const overlay = isNode(node) || (node && typeof node === 'object') ? await targetOverlay(ext, node, 'Overlay to publish') : await pickOverlay(ext, 'Overlay to publish');
      return publishOverlayFlow(ext, overlay);
    },
  },
  {
    id: 'cloudlet.copyReference',
    async run(ext, node?: unknown) {
      const o = await targetOverlay(ext, node, 'Published overlay whose reference to copy', (x) => !!x.publishedRef);
      if (!o.publishedRef) throw new CloudletError('NotFound', `Overlay ${o.name} is not published`, { hint: 'Publish it first' });
      await vscode.env.clipboard.writeText(o.publishedRef);
      void vscode.window.showInformationMessage(`Copied ${o.publishedRef}`);
    },
  },
  {
    id: 'cloudlet.setRegistryCredentials',
    async run(ext) {
      const ref = publishReference(registryDefault(), 'x', '');
      const host = need(await vscode.window.showInputBox({ title: 'Registry Credentials', prompt: 'Registry host[:port]', value: ref ? registryHostOf(ref) : '', ignoreFocusOut: true,
        validateInput: (v) => (/^[\w.-]+(:\d+)?$/.test(v.trim()) ? undefined : 'HOST or HOST:PORT') })).trim();
      await askCredentials(ext, host);
      void vscode.window.showInformationMessage(`Credentials for ${host} kept in VS Code's secret storage.`);
    },
  },
];
