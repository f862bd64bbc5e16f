/** Servers on cloudlets: synthesize (overlay -> launch VM), hand off, show (panel), delete. */
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import type { Ext } from '../ext';
import type { OverlayInfo, ServerInfo } from '../api';
import { checkEnd, isNode, need, pickCloudlet, pickOverlay, pickServer, runJob, sessionOf, walkthroughDone } from './common';
import { LOCAL } from '../cloudlets';
import { initialServerState, serverEnded, serverProgress, serverStatus } from '../state/panels';
import type { ServerPanel } from '../panels/serverPanel';
import { CloudletError } from '../../sandbox/client';
import { findNearest, nearestTable, rankByRtt, type Candidate, type NearestRow } from '../../sandbox/client/nearest';
import { clientOf } from '../clientAdapter';
import { copyBaseById } from './base';
import { classifyError } from '../state/errors';
import { isBaseImage, shortId } from '../state/tree';
import { serverUrls } from '../state/urls';
import { parseRegistrySecret, registryHostOf, registrySecretKey } from '../state/publish';

async function targetServer(ext: Ext, node: unknown, placeHolder: string, filter: (s: ServerInfo) => boolean = () => true): Promise<{ cloudlet: string; server: ServerInfo }> {
  if (isNode(node) && node.cloudlet && node.resourceId && (node.kind === 'server' || node.kind === 'sandbox')) {
    return { cloudlet: node.cloudlet, server: await (await sessionOf(ext, node.cloudlet)).getServer(node.resourceId) };
  }
  const cloudlet = await pickCloudlet(ext, 'On which cloudlet');
  return { cloudlet, server: await pickServer(ext, cloudlet, placeHolder, filter) };
}

/** The URLs a server's back-end answers at (its forwarded ports, on its cloudlet's host). */
export function urlsOf(ext: Ext, cloudlet: string, server: ServerInfo): string[] {
  return serverUrls(server, cloudlet === LOCAL ? ext.localDaemon.url : ext.cloudlets.hostUrl(cloudlet));
}

async function pickUrl(ext: Ext, node: unknown): Promise<{ url: string; server: ServerInfo; cloudlet: string }> {
  const { cloudlet, server } = await targetServer(ext, node, 'Server whose back-end to open', (x) => Object.keys(x.ports ?? {}).length > 0);
  const urls = urlsOf(ext, cloudlet, server);
  if (!urls.length) throw new CloudletError('NotFound', `${server.name} forwards no TCP port`, { hint: 'ports: in cloudlet.yaml name the ports its back-end listens on' });
  const url = urls.length === 1 ? urls[0] : need(await vscode.window.showQuickPick(urls, { placeHolder: `Which port of ${server.name}` }));
  return { url, server, cloudlet };
}

function openServerPanel(ext: Ext, cloudlet: string, server: ServerInfo): ServerPanel {
  const p = ext.serverPanels.open(cloudlet, { ...initialServerState(server.id, server.name, cloudlet, server.status), urls: urlsOf(ext, cloudlet, server) });
  p.onRefresh = () => {
    const where = p.current.cloudlet;
    void sessionOf(ext, where).then((s) => s.getServer(p.current.serverId))
      .then((x) => p.update({ ...serverStatus(p.current, x.status), urls: urlsOf(ext, where, x) }), () => {});
  };
  // The panel's buttons run the tree's commands on the server the panel shows now (after a handoff: at its destination).
  p.onAction = (action) => {
    const node = { kind: 'server', contextValue: 'server', id: p.current.serverId, label: p.current.name, icon: '', collapsible: 'none', cloudlet: p.current.cloudlet, resourceId: p.current.serverId };
    const command = action === 'open' ? 'cloudlet.openInBrowser' : action === 'handoff' ? 'cloudlet.handoff' : 'cloudlet.deleteServer';
    void vscode.commands.executeCommand(command, node);
  };
  return p;
}

/** Synthesis of `overlay` on `cloudlet`, followed in the Server panel. */
async function synthesizeOn(ext: Ext, overlay: OverlayInfo, cloudlet: string): Promise<void> {
  const s = await sessionOf(ext, cloudlet);
  // The cloudlet must hold the overlay's base: say so before sending anything.
  if (overlay.baseId) {
    const bases = (await s.listImages()).filter(isBaseImage).map((b) => b.baseId);
    if (!bases.includes(overlay.baseId)) {
      // Said with the fix as a button: copy the sandbox's base there, then synthesize.
      const msg = `The cloudlet lacks the base VM (${cloudlet}): it does not have base ${shortId(overlay.baseId)} that overlay ${overlay.name} needs. Copy it there from the sandbox first.`;
      ext.output.error(msg);
      const choice = await vscode.window.showErrorMessage(msg, 'Copy Base to Cloudlet...', 'Show Log');
      if (choice === 'Show Log') ext.output.channel.show(true);
      if (choice !== 'Copy Base to Cloudlet...') return;
      await copyBaseById(ext, overlay.baseId, cloudlet);
      return synthesizeOn(ext, overlay, cloudlet);
    }
  }
  // A published overlay: the cloudlet pulls it from the registry (by tag or pinned by digest), or it is sent from here.
  let source: 'ref' | 'digest' | 'send' = 'send';
  if (overlay.publishedRef) {
    const items: (vscode.QuickPickItem & { v: 'ref' | 'digest' | 'send' })[] = [
      { label: overlay.publishedRef, description: 'published reference', detail: 'the cloudlet pulls the overlay from the registry', v: 'ref' },
      ...(overlay.publishedDigest ? [{ label: overlay.publishedDigest, description: 'pinned by digest', v: 'digest' as const }] : []),
      { label: 'Send the local copy', description: cloudlet === LOCAL ? 'the sandbox daemon\'s own image' : `stream it from the sandbox to ${cloudlet}`, v: 'send' },
    ];
    source = need(await vscode.window.showQuickPick(items, { placeHolder: `Synthesize ${overlay.name} on ${cloudlet} from`, ignoreFocusOut: true })).v;
  }
  let url = source === 'ref' ? overlay.publishedRef : source === 'digest' ? overlay.publishedDigest : overlay.url;
  if (source === 'send' && cloudlet !== LOCAL) {
    // Not published: send the overlay to the cloudlet's image service first (a daemon gives its token only to itself).
    const local = await sessionOf(ext, LOCAL);
    if (local.copyOverlayTo) {
      url = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Sending overlay ${overlay.name} to ${cloudlet}`, cancellable: true }, (progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        let last = 0;
        return local.copyOverlayTo!(overlay.id, s, (e) => {
          const pct = e.total ? Math.floor(((e.done ?? 0) / e.total) * 100) : 0;
          if (pct > last) { progress.report({ increment: pct - last, message: `${pct}%` }); last = pct; }
        }, abort.signal);
      });
    }
  }
  if (!url) throw new CloudletError('BadInput', `Overlay ${overlay.name} has no URL a cloudlet can fetch it from`);
  const existing = new Set((await s.listServers()).map((x) => x.name));
  let name = overlay.name;
  for (let i = 2; existing.has(name); i++) name = `${overlay.name}-${i}`;
  // A cloudlet pulls a private oci:// repository only with the user's own login: the one Publish keeps in
  // secret storage, read (and sent) only if the registry refused the anonymous pull.
  const registryLogin = async () => (url.startsWith('oci://') ? parseRegistrySecret(await ext.context.secrets.get(registrySecretKey(registryHostOf(url)))) : undefined);
  const { server, jobId } = await s.synthesize(url, name, registryLogin);
  const panel = openServerPanel(ext, cloudlet, server);
  panel.update({ ...panel.current, operation: 'synthesis', phases: [] });
  ext.refresh('cloudlets');
  const end = await runJob(s, jobId, `Synthesizing ${overlay.name} on ${cloudlet}`, (e) => panel.update(serverProgress(panel.current, 'synthesis', e)));
  const after = await s.getServer(server.id).catch(() => undefined);
  // The forwarded ports exist once the VM runs: the panel's URLs (and Open in Browser) come from the server now.
  panel.update({ ...serverEnded(panel.current, end, { status: after?.status ?? (end.status === 'DONE' ? 'ACTIVE' : 'ERROR') }), ...(after ? { urls: urlsOf(ext, cloudlet, after) } : {}) });
  ext.refresh('cloudlets', true);
  checkEnd(end, `Synthesis on ${cloudlet}`);
  if (after && after.status !== 'ACTIVE') throw new CloudletError('Internal', `Synthesis on ${cloudlet} ended with the server ${after.status}`);
  walkthroughDone('synthesized');
  void vscode.window.showInformationMessage(`${name} is running on ${cloudlet}.`);
}

/**
 * Elijah's discovery by round-trip time (sandbox/client/nearest.ts, as `cloudlet synthesize
 * --nearest`): every configured cloudlet (a fleet's regions each) is asked whether it holds the
 * overlay's base, those that do are probed several times, and the table goes to the log and into a
 * quick pick with the nearest first and preselected. Unreachable ones and ties are shown as such.
 */
async function pickNearest(ext: Ext, overlay: OverlayInfo): Promise<string> {
  const names = ext.cloudlets.list().map((c) => c.name);
  if (!names.length) throw new CloudletError('NotFound', 'No cloudlet is configured', { hint: 'Add Cloudlet... (a fleet\'s Keystone URL adds every region)' });
  const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Finding the nearest cloudlet for ${overlay.name}`, cancellable: true }, async (progress, token) => {
    const abort = new AbortController();
    token.onCancellationRequested(() => abort.abort());
    const candidates: Candidate[] = [];
    const failed: NearestRow[] = [];
    await Promise.all(names.map(async (name) => {
      try {
        const client = clientOf(await sessionOf(ext, name));
        if (client) candidates.push({ name, client });
      } catch (e) {
        failed.push({ name, samplesMs: [], failures: 0, state: 'unreachable', note: classifyError(e).message.split('\n')[0] });
      }
    }));
    const measured = candidates.length ? await findNearest(candidates, overlay.baseId, { signal: abort.signal, onPhase: (m) => progress.report({ message: m }) }) : { rows: [] };
    return rankByRtt([...measured.rows, ...failed]);
  });
  ext.output.info(`nearest cloudlet for ${overlay.name} (base ${shortId(overlay.baseId)}):\n${nearestTable(result)}`);
  const items = result.rows.map((r) => ({
    label: `${r.state === 'nearest' ? '$(star-full) ' : ''}${r.name}`,
    description: [r.medianMs !== undefined ? `median ${r.medianMs.toFixed(2)} ms` : '', r.samplesMs.length || r.failures ? `${r.samplesMs.length}/${r.samplesMs.length + r.failures} probes answered` : ''].filter(Boolean).join(' · '),
    detail: `${r.state}${r.holdsBase === false ? ' (does not hold the base)' : ''}${r.note ? `: ${r.note}` : ''}`,
    name: r.name, ok: r.state === 'nearest' || r.state === 'tie' || r.state === 'farther',
  }));
  if (!result.nearest) {
    throw new CloudletError('MissingBase', `No cloudlet that holds base ${shortId(overlay.baseId)} answered (${result.rows.map((r) => `${r.name}: ${r.state}`).join(', ')})`,
      { hint: 'copy the base to a cloudlet first; the round-trip table is in the log' });
  }
  const pick = await new Promise<(typeof items)[number] | undefined>((resolve) => {
    const qp = vscode.window.createQuickPick<(typeof items)[number]>();
    qp.title = `Nearest cloudlet for ${overlay.name}: ${result.nearest}`;
    qp.placeholder = 'Round-trip times (median of several probes). Enter synthesizes on the selected cloudlet.';
    qp.items = items;
    qp.activeItems = items.filter((i) => i.name === result.nearest);
    qp.ignoreFocusOut = true;
    let done = false;
    qp.onDidAccept(() => { done = true; resolve(qp.selectedItems[0] ?? qp.activeItems[0]); qp.dispose(); });
    qp.onDidHide(() => { if (!done) resolve(undefined); qp.dispose(); });
    qp.show();
  });
  const chosen = need(pick);
  if (!chosen.ok) throw new CloudletError('BadInput', `${chosen.name} cannot synthesize ${overlay.name}: ${chosen.detail}`);
  return chosen.name;
}

export const serverCommands: CommandDef[] = [
  {
    id: 'cloudlet.synthesize',
    async run(ext, node?: unknown) {
      const overlay = isNode(node) && node.kind === 'overlay' && node.resourceId
        ? await (await sessionOf(ext, LOCAL)).getOverlay(node.resourceId) : await pickOverlay(ext, 'Overlay to synthesize');
      const cloudlet = isNode(node) && node.kind === 'cloudlet' && node.cloudlet ? node.cloudlet : await pickCloudlet(ext, 'Cloudlet to synthesize on');
      await synthesizeOn(ext, overlay, cloudlet);
    },
  },
  {
    id: 'cloudlet.synthesizeNearest',
    async run(ext, node?: unknown) {
      const overlay = isNode(node) && node.kind === 'overlay' && node.resourceId
        ? await (await sessionOf(ext, LOCAL)).getOverlay(node.resourceId) : await pickOverlay(ext, 'Overlay to synthesize on the nearest cloudlet');
      const cloudlet = await pickNearest(ext, overlay);
      await synthesizeOn(ext, overlay, cloudlet);
    },
  },
  {
    id: 'cloudlet.handoff',
    async run(ext, node?: unknown) {
      const { cloudlet, server } = await targetServer(ext, node, 'Server to hand off', (x) => x.status === 'ACTIVE');
      const dest = await pickCloudlet(ext, `Hand ${server.name} off to`, { exclude: cloudlet, includeLocal: cloudlet !== LOCAL });
      const src = await sessionOf(ext, cloudlet);
      const target = await (await sessionOf(ext, dest)).handoffTarget();
      const panel = openServerPanel(ext, cloudlet, server);
      panel.update({ ...panel.current, operation: 'handoff', phases: [], destination: dest, downtimeMs: undefined, totalMs: undefined, bytesSent: undefined, error: undefined, tracking: undefined, trackingFallback: undefined, roundPages: undefined });
      const { jobId } = await src.handoff(server.id, target, server.name);
      const end = await runJob(src, jobId, `Handing ${server.name} off to ${dest}`, (e) => panel.update(serverProgress(panel.current, 'handoff', e)));
      let status = end.status === 'DONE' ? 'ACTIVE' : undefined;
      const r = (end.result ?? {}) as Record<string, unknown>;
      const destId = typeof r.destination_server_id === 'string' ? r.destination_server_id : typeof r.destServerId === 'string' ? r.destServerId : undefined;
      if (destId) {
        status = (await (await sessionOf(ext, dest)).getServer(destId).catch(() => undefined))?.status ?? status;
        ext.serverPanels.alias(dest, destId, panel);
      } else if (end.status !== 'DONE') {
        status = (await src.getServer(server.id).catch(() => undefined))?.status;
      }
      panel.update(serverEnded(panel.current, end, { status, destination: dest }));
      if (destId) panel.update({ ...panel.current, serverId: destId, cloudlet: dest });
      ext.refresh('cloudlets', true);
      ext.refresh('sandbox');
      checkEnd(end, `Handoff of ${server.name} to ${dest}`);
      // Its address moved with it: say where it answers now (the old forwarded port is gone).
      const moved = destId ? await (await sessionOf(ext, dest)).getServer(destId).catch(() => undefined) : undefined;
      const before = urlsOf(ext, cloudlet, server);
      const now = moved ? urlsOf(ext, dest, moved) : [];
      if (moved) panel.update({ ...panel.current, urls: now });
      const took = typeof r.downtime_ms === 'number' ? ` (downtime ${r.downtime_ms} ms)` : '';
      const text = now.length
        ? `${server.name} moved to ${dest}${took}: it answers at ${now.join(', ')} now${before.length ? `; ${before.join(', ')} no longer does` : ''}.`
        : `${server.name} moved to ${dest}${took}.`;
      ext.output.info(text);
      void vscode.window.showInformationMessage(text, ...(now.length ? ['Open in Browser', 'Copy URL'] : [])).then(async (c) => {
        if (c === 'Open in Browser') await vscode.env.openExternal(vscode.Uri.parse(now[0]));
        else if (c === 'Copy URL') await vscode.env.clipboard.writeText(now[0]);
      });
    },
  },
  {
    id: 'cloudlet.openInBrowser',
    async run(ext, node?: unknown) {
      const { url } = await pickUrl(ext, node);
      ext.output.info(`open ${url}`);
      await vscode.env.openExternal(vscode.Uri.parse(url));
    },
  },
  {
    id: 'cloudlet.copyUrl',
    async run(ext, node?: unknown) {
      const { url, server } = await pickUrl(ext, node);
      await vscode.env.clipboard.writeText(url);
      void vscode.window.showInformationMessage(`Copied ${url} (${server.name}).`);
    },
  },
  {
    id: 'cloudlet.showServer',
    async run(ext, node?: unknown) {
      const { cloudlet, server } = await targetServer(ext, node, 'Server to show');
      const existing = ext.serverPanels.get(cloudlet, server.id);
      if (existing && !existing.isDisposed) { existing.reveal(); existing.update(serverStatus(existing.current, server.status)); return; }
      openServerPanel(ext, cloudlet, server);
    },
  },
  {
    id: 'cloudlet.deleteServer',
    async run(ext, node?: unknown) {
      const { cloudlet, server } = await targetServer(ext, node, 'Server to delete');
      const ok = await vscode.window.showWarningMessage(`Delete ${server.name} on ${cloudlet}?`, { modal: true }, 'Delete');
      if (ok !== 'Delete') return;
      await (await sessionOf(ext, cloudlet)).deleteServer(server.id);
      ext.serverPanels.get(cloudlet, server.id)?.dispose();
      ext.refresh(cloudlet === LOCAL ? 'sandbox' : 'cloudlets', true);
    },
  },
];

