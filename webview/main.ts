/**
 * Browser side of the panels. Receives the whole panel state from the host (extension/protocol.ts
 * HostMessage) and renders it; sends WebviewMessage back. Components from @vscode-elements/elements,
 * colours from VS Code's theme variables (media/panel.css), no inline styles or scripts (CSP).
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-badge/index.js';
import '@vscode-elements/elements/dist/vscode-progress-bar/index.js';
import '@vscode-elements/elements/dist/vscode-divider/index.js';
import type { ChartSlice, HostMessage, OverlayPanelState, PanelKind, PhaseState, ReservationsPanelState, ServerPanelState, WebviewMessage } from '../extension/protocol';
import { renderDonut, renderLeaseAxis, renderTimeline } from './charts';
import { sliceHue } from './layout';
import { el, formatBytes, formatMs } from './dom';

declare function acquireVsCodeApi(): { postMessage(m: WebviewMessage): void; setState(s: unknown): void; getState(): unknown };

const vscode = acquireVsCodeApi();
const root = document.getElementById('root')!;
const kind = (document.body.dataset.panel ?? 'overlay') as PanelKind;

function send(m: WebviewMessage): void { vscode.postMessage(m); }

function badge(text: string, tone: 'ok' | 'warn' | 'err' | 'busy' | 'idle'): HTMLElement {
  return el('span', { class: `status status-${tone}`, 'data-test': 'status' }, text);
}

function phaseRows(phases: PhaseState[], running: boolean): HTMLElement {
  const list = el('ol', { class: 'phases', 'data-test': 'phases' });
  phases.forEach((p, i) => {
    const open = p.endedAt === undefined && running && i === phases.length - 1;
    const dur = p.endedAt !== undefined ? formatMs(p.endedAt - p.startedAt) : open ? 'running' : '';
    // Rounds of a handoff count rounds, every other phase counts bytes.
    const fmt = /round/i.test(p.name) ? (n: number) => String(n) : formatBytes;
    const bytes = p.total ? `${fmt(p.done ?? 0)} / ${fmt(p.total)}` : p.done ? fmt(p.done) : '';
    const row = el('li', { class: open ? 'phase open' : 'phase' },
      el('span', { class: 'phase-name' }, p.name),
      el('span', { class: 'phase-msg' }, p.message ?? ''),
      el('span', { class: 'phase-bytes' }, bytes),
      el('span', { class: 'phase-dur' }, dur));
    if (open) {
      const bar = document.createElement('vscode-progress-bar') as HTMLElement & { value?: number; max: number };
      if (p.total) { bar.max = p.total; bar.value = p.done ?? 0; }
      row.append(bar);
    }
    list.append(row);
  });
  return list;
}

/** The Overlay panel's header stays the same DOM across updates, so its buttons can be clicked mid-build. */
let overlayHeader: { root: HTMLElement; title: HTMLElement; status: HTMLElement; cancel: HTMLElement; publish: HTMLElement } | undefined;
const overlayBody = el('section', { class: 'body' });

function renderOverlay(s: OverlayPanelState, chart: ChartSlice[]): void {
  const tone = s.publishing ? 'busy' : s.status === 'done' ? 'ok' : s.status === 'running' ? 'busy' : s.status === 'failed' ? 'err' : s.status === 'cancelled' ? 'warn' : 'idle';
  const label = s.publishing ? 'Publishing' : { idle: 'Idle', running: 'Building', done: 'Ready', failed: 'Failed', cancelled: 'Cancelled' }[s.status];
  if (!overlayHeader) {
    const cancel = el('vscode-button', { secondary: '', 'data-test': 'cancel' }, 'Cancel');
    cancel.addEventListener('click', () => send({ type: 'overlay/cancel' }));
    const publish = el('vscode-button', { 'data-test': 'publish' }, 'Publish');
    publish.addEventListener('click', () => send({ type: 'overlay/publish' }));
    const title = el('h1', {});
    const status = badge('', 'idle');
    overlayHeader = { root: el('header', {}, title, status, el('div', { class: 'actions' }, cancel, publish)), title, status, cancel, publish };
    root.replaceChildren(overlayHeader.root, overlayBody);
  }
  const h = overlayHeader;
  h.title.textContent = s.title;
  h.status.textContent = label;
  h.status.className = `status status-${tone}`;
  h.cancel.hidden = s.status !== 'running' && !s.publishing;
  h.publish.textContent = s.publishedRef ? 'Publish Again' : 'Publish';
  h.publish.title = s.canPublish ? 'Publish to the default registry' : 'Publishing is not set up yet';
  h.publish.toggleAttribute('disabled', !(s.status === 'done' && s.canPublish) || !!s.publishing);

  const parts: Node[] = [];
  if (s.publishedRef) {
    const copy = el('vscode-button', { secondary: '', 'data-test': 'copy-ref' }, 'Copy');
    copy.addEventListener('click', () => send({ type: 'copy', text: s.publishedRef! }));
    parts.push(el('p', { class: 'published' }, 'Published as ', el('code', { 'data-test': 'published-ref' }, s.publishedRef), ' ', copy));
  }
  if (s.error) parts.push(el('p', { class: 'error', role: 'alert' }, s.error));
  if (s.phases.length) parts.push(el('h2', {}, 'Build'), phaseRows(s.phases, s.status === 'running' || !!s.publishing));

  if (s.composition && chart.length) {
    const c = s.composition;
    const ratio = c.compressedBytes > 0 ? (c.rawBytes / c.compressedBytes).toFixed(1) : '–';
    const legend = el('table', { class: 'legend' },
      el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'Part'), el('th', { class: 'num' }, 'Changed data'), el('th', { class: 'num' }, 'Share'))),
      el('tbody', {}, ...chart.map((x, i) => el('tr', {},
        el('td', {}, el('span', { class: `swatch ${sliceHue(i)}` })),
        el('td', {}, x.label),
        el('td', { class: 'num' }, formatBytes(x.bytes)),
        el('td', { class: 'num' }, `${(x.share * 100).toFixed(1)}%`)))));
    parts.push(
      el('h2', {}, 'What the overlay is made of'),
      el('div', { class: 'composition', 'data-test': 'chart' }, renderDonut(chart, `${formatBytes(c.rawBytes)}`, 'changed data'), legend),
      el('dl', { class: 'facts' },
        el('dt', {}, 'Changed data'), el('dd', {}, formatBytes(c.rawBytes)),
        el('dt', {}, 'Overlay size'), el('dd', {}, `${formatBytes(c.compressedBytes)} (${ratio}× smaller)`),
        ...(c.discarded?.memoryBytes !== undefined ? [el('dt', {}, 'Freed memory left out'), el('dd', { 'data-test': 'discarded-memory' }, formatBytes(c.discarded.memoryBytes))] : []),
        ...(c.discarded?.diskBytes !== undefined ? [el('dt', {}, 'Freed disk blocks left out'), el('dd', { 'data-test': 'discarded-disk' }, formatBytes(c.discarded.diskBytes))] : []),
        el('dt', {}, 'Segments'), el('dd', {}, String(c.segments)),
        el('dt', {}, 'Base'), el('dd', {}, el('code', {}, c.baseId.slice(0, 16))),
        el('dt', {}, 'Overlay ID'), el('dd', {}, el('code', {}, c.overlayId.slice(0, 16)))),
    );
  } else if (s.status === 'done') {
    parts.push(el('p', { class: 'muted' }, 'The daemon did not report what this overlay is made of.'));
  } else if (s.status === 'idle') {
    parts.push(el('p', { class: 'muted' }, 'Waiting for the build to start…'));
  }
  overlayBody.replaceChildren(...parts);
}

function renderServer(s: ServerPanelState): void {
  const st = s.status.toUpperCase();
  const tone = st === 'ACTIVE' ? 'ok' : st === 'ERROR' ? 'err' : st === 'BUILD' || st === 'MIGRATING' ? 'busy' : 'warn';
  const refresh = el('vscode-button', { secondary: '' }, 'Refresh');
  refresh.addEventListener('click', () => send({ type: 'server/refresh' }));
  const button = (label: string, action: 'open' | 'handoff' | 'delete', secondary = true) => {
    const b = el('vscode-button', { ...(secondary ? { secondary: '' } : {}), 'data-test': action }, label);
    b.addEventListener('click', () => send({ type: 'server/action', action }));
    return b;
  };
  const busy = st === 'BUILD' || st === 'MIGRATING';
  const actions: Node[] = [];
  if (s.urls?.length && st === 'ACTIVE') actions.push(button('Open in Browser', 'open', false));
  if (st === 'ACTIVE') actions.push(button('Hand Off…', 'handoff'));
  if (!busy && st !== 'DELETED') actions.push(button('Delete…', 'delete'));
  actions.push(refresh);
  const op = s.operation === 'handoff' ? `Handoff${s.destination ? ` to ${s.destination}` : ''}` : s.operation === 'synthesis' ? 'VM synthesis' : '';
  const parts: Node[] = [
    el('header', {}, el('h1', {}, s.name), badge(st, tone), el('div', { class: 'actions' }, ...actions)),
    el('p', { class: 'muted' }, `on ${s.cloudlet}${op ? ` · ${op}` : ''} · id ${s.serverId}`),
  ];
  if (s.urls?.length) parts.push(el('p', { 'data-test': 'urls' }, `Back-end at ${s.urls.join(', ')}`));
  if (s.error) parts.push(el('p', { class: 'error', role: 'alert' }, s.error));
  const card = (label: string, value: string, test: string, strong = false) =>
    el('div', { class: strong ? 'card strong' : 'card', 'data-test': test }, el('div', { class: 'card-value' }, value), el('div', { class: 'card-label' }, label));
  const total = s.totalMs ?? (s.phases.length ? (s.phases[s.phases.length - 1].endedAt ?? s.updatedAt) - s.phases[0].startedAt : undefined);
  const cards = el('div', { class: 'cards' });
  if (s.bytesSent !== undefined) cards.append(card('bytes sent', formatBytes(s.bytesSent), 'bytes'));
  if (total !== undefined) cards.append(card(s.operation === 'handoff' ? 'total handoff time' : 'total time', formatMs(total), 'total'));
  if (s.downtimeMs !== undefined) cards.append(card('downtime', formatMs(s.downtimeMs), 'downtime', true));
  if (s.tracking) cards.append(card('dirty-page tracking', s.tracking === 'qemu-migration' ? 'QEMU migration' : 'full RAM compare', 'tracking'));
  if (cards.childElementCount) parts.push(cards);
  if (s.trackingFallback) parts.push(el('p', { class: 'muted', 'data-test': 'tracking-fallback' }, `Tracking fell back to the full RAM compare: ${s.trackingFallback}`));
  if (s.roundPages?.length) {
    const last = s.roundPages.length - 1;
    parts.push(el('p', { 'data-test': 'round-pages' }, `RAM pages sent per round: ${s.roundPages.map((n, i) => (i === last ? `${n} (VM paused)` : String(n))).join(' · ')}`));
  }
  if (s.phases.length) {
    parts.push(el('h2', {}, s.operation === 'handoff' ? 'Handoff timeline' : 'Synthesis timeline'),
      el('div', { class: 'timeline', 'data-test': 'timeline' }, renderTimeline(s.phases, s.updatedAt, s.downtimeMs)),
      phaseRows(s.phases, st === 'BUILD' || st === 'MIGRATING'));
  } else {
    parts.push(el('p', { class: 'muted' }, 'No synthesis or handoff has run from this window for this server.'));
  }
  root.replaceChildren(...parts);
}

function renderReservations(s: ReservationsPanelState): void {
  const refresh = el('vscode-button', { secondary: '', 'data-test': 'refresh' }, 'Refresh');
  refresh.addEventListener('click', () => send({ type: 'reservations/refresh' }));
  const reserve = el('vscode-button', { 'data-test': 'reserve' }, 'Reserve Device…');
  reserve.addEventListener('click', () => send({ type: 'reservations/reserve' }));
  const parts: Node[] = [
    el('header', {}, el('h1', {}, 'Reservations'), s.loading ? badge('Loading', 'busy') : badge('Up to date', 'ok'), el('div', { class: 'actions' }, reserve, refresh)),
    el('p', { class: 'muted' }, `Leases per device on a time axis (UTC) reaching to the last reservation ahead. Yours are named; other projects' windows show as reserved. Updated ${new Date(s.updatedAt).toISOString().slice(11, 19)} UTC.`),
  ];
  if (!s.cloudlets.length && !s.loading) parts.push(el('p', { class: 'muted' }, 'No configured cloudlet offers devices.'));
  for (const c of s.cloudlets) {
    parts.push(el('h2', {}, c.name));
    if (c.error) parts.push(el('p', { class: 'error', role: 'alert' }, c.error));
    else if (c.timeline && c.timeline.rows.length) parts.push(el('div', { class: 'lease-axis', 'data-test': 'lease-axis' }, renderLeaseAxis(c.timeline)));
    else parts.push(el('p', { class: 'muted' }, 'No device here.'));
  }
  parts.push(el('div', { class: 'lease-legend' }, el('span', { class: 'swatch lease-mine' }), ' your lease ', el('span', { class: 'swatch lease-other' }), ' reserved by another project ',
    el('span', { class: 'swatch lease-now' }), ' now'));
  root.replaceChildren(...parts);
}

window.addEventListener('message', (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  if (m.type === 'overlay/state') renderOverlay(m.state, m.chart);
  else if (m.type === 'server/state') renderServer(m.state);
  else if (m.type === 'reservations/state') renderReservations(m.state);
});

send({ type: 'ready', panel: kind });
