/** Overlays: create from a sandbox VM, show (panel with the chart), delete. */
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import type { Ext } from '../ext';
import type { CloudletSession, JobEnd } from '../api';
import type { OverlayPanel } from '../panels/overlayPanel';
import { checkEnd, isNode, need, pickOverlay, pickServer, runJob, sessionOf } from './common';
import { LOCAL } from '../cloudlets';
import { serverState } from '../state/tree';
import { compositionFromManifest, discardedFromResult, overlayEnded, overlayProgress } from '../state/panels';

/** Reads the overlay id a job produced from its result. */
export function overlayIdOf(result: unknown): string | undefined {
  if (!result || typeof result !== 'object') return undefined;
  const r = result as Record<string, any>;
  // The image id (what Glance and the views know), not the overlay's content hash.
  const v = r.image_id ?? r.imageId ?? r['overlay-id'] ?? r.overlay?.image_id ?? r.id;
  return typeof v === 'string' ? v : undefined;
}

/** After a build/overlay job: fetch the overlay and fill the panel with its composition. */
export async function finishOverlayPanel(ext: Ext, s: CloudletSession, panel: OverlayPanel, end: JobEnd, key: string): Promise<void> {
  const id = overlayIdOf(end.result);
  let composition = compositionFromManifest((end.result as any)?.manifest ?? end.result);
  if (id) {
    const o = await s.getOverlay(id).catch(() => undefined);
    if (o?.composition) composition = o.composition;
    panel.overlayId = id;
    ext.overlayPanels.rekey(key, id);
    if (o) panel.update({ ...panel.current, title: o.name, publishedRef: o.publishedRef });
  }
  const discarded = discardedFromResult(end.result);
  if (composition && discarded) composition = { ...composition, discarded };
  panel.update(overlayEnded(panel.current, end, composition && composition.parts.length ? composition : undefined));
}

export const overlayCommands: CommandDef[] = [
  {
    id: 'cloudlet.createOverlay',
    async run(ext, node?: unknown) {
      const s = await sessionOf(ext, LOCAL);
      const vm = isNode(node) && node.resourceId ? await s.getServer(node.resourceId)
        : await pickServer(ext, LOCAL, 'Sandbox VM to make an overlay of', (x) => ['running', 'paused'].includes(serverState(x.status)));
      const name = need(await vscode.window.showInputBox({ title: 'Create VM Overlay', prompt: 'Name of the overlay', value: vm.name.replace(/^sandbox-/, '') + '-overlay', ignoreFocusOut: true }));
      const key = `vm:${vm.id}`;
      const panel = ext.overlayPanels.open(key, name);
      panel.update({ ...panel.current, status: 'running', phases: [] });
      const { jobId } = await s.createOverlay(vm.id, name);
      const external: { cancel?: () => void } = {};
      panel.cancel = () => external.cancel?.();
      const end = await runJob(s, jobId, `Creating overlay ${name}`, (e) => panel.update(overlayProgress(panel.current, e)), external);
      panel.cancel = undefined;
      ext.refresh('overlays', true);
      ext.refresh('sandbox');
      if (end.status !== 'DONE') { panel.update(overlayEnded(panel.current, end)); checkEnd(end, `Overlay ${name}`); }
      await finishOverlayPanel(ext, s, panel, end, key);
    },
  },
  {
    id: 'cloudlet.showOverlay',
    async run(ext, node?: unknown) {
      const s = await sessionOf(ext, LOCAL);
      const o = isNode(node) && node.kind === 'overlay' && node.resourceId ? await s.getOverlay(node.resourceId) : await s.getOverlay((await pickOverlay(ext, 'Overlay to show')).id);
      const panel = ext.overlayPanels.open(o.id, o.name);
      panel.overlayId = o.id;
      panel.update({ ...panel.current, title: o.name, status: 'done', composition: o.composition ?? panel.current.composition, publishedRef: o.publishedRef });
    },
  },
  {
    id: 'cloudlet.deleteOverlay',
    async run(ext, node?: unknown) {
      const s = await sessionOf(ext, LOCAL);
      const o = isNode(node) && node.kind === 'overlay' && node.resourceId ? await s.getOverlay(node.resourceId) : await pickOverlay(ext, 'Overlay to delete');
      const ok = await vscode.window.showWarningMessage(`Delete overlay ${o.name}?`, { modal: true }, 'Delete');
      if (ok !== 'Delete') return;
      await s.deleteImage(o.id);
      ext.overlayPanels.get(o.id)?.dispose();
      ext.refresh('overlays', true);
    },
  },
];
