/**
 * Hand-made SVG charts: a donut of what an overlay is made of, and a phase timeline (Gantt) for
 * synthesis and handoff. Colours come from CSS classes bound to VS Code's chart theme variables.
 */
import type { ChartSlice, PhaseState, TimelineView } from '../extension/protocol';
import { formatMs, svg } from './dom';
import { shortLabel, sliceHue, timelineLayout } from './layout';

export function renderDonut(slices: ChartSlice[], centre: string, sub: string): SVGElement {
  const size = 180, r = 70, w = 26, c = size / 2;
  const root = svg('svg', { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: 'img', class: 'donut' });
  root.append(svg('title', {}, slices.map((s) => `${s.label}: ${(s.share * 100).toFixed(1)}%`).join('\n')));
  root.append(svg('circle', { cx: c, cy: c, r, class: 'donut-track', 'stroke-width': w, fill: 'none' }));
  let angle = -Math.PI / 2;
  slices.forEach((s, i) => {
    if (s.share <= 0) return;
    const sweep = Math.min(s.share, 0.9999) * Math.PI * 2;
    const x1 = c + r * Math.cos(angle), y1 = c + r * Math.sin(angle);
    const x2 = c + r * Math.cos(angle + sweep), y2 = c + r * Math.sin(angle + sweep);
    const large = sweep > Math.PI ? 1 : 0;
    const path = svg('path', { d: `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${r} ${r} 0 ${large} 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`,
      class: `slice ${sliceHue(i)}`, 'stroke-width': w, fill: 'none' });
    path.append(svg('title', {}, `${s.label}: ${(s.share * 100).toFixed(1)}%`));
    root.append(path);
    angle += sweep;
  });
  root.append(svg('text', { x: c, y: c - 2, class: 'donut-centre', 'text-anchor': 'middle' }, centre));
  root.append(svg('text', { x: c, y: c + 16, class: 'donut-sub', 'text-anchor': 'middle' }, sub));
  return root;
}

export function renderTimeline(phases: PhaseState[], now: number, downtimeMs?: number): SVGElement {
  // Labels get the width of the longest one and durations a column of their own: no text on a bar.
  const rowH = 24;
  const { width, barsLeft, barsRight } = timelineLayout(phases.map((p) => p.name));
  const t0 = phases[0].startedAt;
  const t1 = Math.max(...phases.map((p) => p.endedAt ?? now), t0 + 1);
  const scale = (t: number) => barsLeft + ((t - t0) / (t1 - t0)) * (barsRight - barsLeft);
  const height = phases.length * rowH + 30;
  const summary = phases.map((p) => `${p.name} ${p.endedAt !== undefined ? formatMs(p.endedAt - p.startedAt) : 'running'}`).join(', ');
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', class: 'gantt', role: 'img', 'aria-label': `Timeline: ${summary}` });
  phases.forEach((p, i) => {
    const y = i * rowH + 4;
    const x = scale(p.startedAt), x2 = scale(p.endedAt ?? now);
    const downtime = /pause|final|downtime|switch|resume-dest|last/i.test(p.name) && downtimeMs !== undefined;
    const label = svg('text', { x: 0, y: y + 15, class: 'gantt-label' }, shortLabel(p.name));
    if (shortLabel(p.name) !== p.name) label.append(svg('title', {}, p.name));
    root.append(label);
    const bar = svg('rect', { x, y, width: Math.max(2, x2 - x), height: rowH - 8, rx: 3, class: `gantt-bar${p.endedAt === undefined ? ' open' : ''}${downtime ? ' downtime' : ''}` });
    bar.append(svg('title', {}, `${p.name}: ${p.endedAt !== undefined ? formatMs(p.endedAt - p.startedAt) : 'running'}`));
    root.append(bar);
    if (p.endedAt !== undefined) root.append(svg('text', { x: Math.max(x, x2) + 4, y: y + 13, class: 'gantt-dur' }, formatMs(p.endedAt - p.startedAt)));
  });
  const axisY = phases.length * rowH + 10;
  root.append(svg('line', { x1: barsLeft, x2: barsRight, y1: axisY, y2: axisY, class: 'gantt-axis' }));
  root.append(svg('text', { x: barsLeft, y: axisY + 14, class: 'gantt-tick' }, '0'));
  root.append(svg('text', { x: barsRight, y: axisY + 14, class: 'gantt-tick', 'text-anchor': 'end' }, formatMs(t1 - t0)));
  return root;
}

/** Leases per device on a time axis: one row per device, a bar per lease window, a line at now. */
export function renderLeaseAxis(t: TimelineView): SVGElement {
  const rowH = 40, width = 820, pad = 24, top = 22;
  const labelW = timelineLayout(t.rows.flatMap((r) => [r.device, r.machineName]), width).barsLeft;
  const x = (f: number) => labelW + f * (width - labelW - pad);
  const height = top + t.rows.length * rowH + 8;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', class: 'leases', role: 'img',
    'aria-label': `Leases per device: ${t.rows.map((r) => `${r.device} ${r.bars.length ? r.bars.map((b) => `${b.label} (${b.status})`).join(', ') : 'free'}`).join('; ')}` });
  for (const tick of t.ticks) {
    root.append(svg('line', { x1: x(tick.at), x2: x(tick.at), y1: top - 4, y2: height - 4, class: 'lease-tick' }));
    root.append(svg('text', { x: x(tick.at), y: 12, class: 'gantt-tick', 'text-anchor': 'middle' }, tick.label));
  }
  t.rows.forEach((r, i) => {
    const y = top + i * rowH;
    root.append(svg('rect', { x: labelW, y: y + 4, width: width - labelW - pad, height: rowH - 10, class: 'lease-track', rx: 3 }));
    root.append(svg('text', { x: 0, y: y + 17, class: 'gantt-label' }, shortLabel(r.device)));
    root.append(svg('text', { x: 0, y: y + 30, class: 'gantt-tick' }, shortLabel(r.machineName)));
    for (const b of r.bars) {
      const bx = x(b.left), bw = Math.max(3, x(b.left + b.width) - bx);
      const bar = svg('rect', { x: bx, y: y + 7, width: bw, height: rowH - 16, rx: 3, class: `lease-bar ${b.mine ? 'lease-mine' : 'lease-other'} status-${b.status.toLowerCase()}`, 'data-test': 'lease-bar' });
      bar.append(svg('title', {}, `${b.label} (${b.status}) ${b.start.slice(0, 16).replace('T', ' ')} – ${b.end.slice(0, 16).replace('T', ' ')} UTC`));
      root.append(bar);
      if (bw > 40) root.append(svg('text', { x: bx + 5, y: y + 23, class: 'lease-label' }, b.label));
    }
  });
  const nowF = (t.now - t.from) / (t.to - t.from);
  root.append(svg('line', { x1: x(nowF), x2: x(nowF), y1: top - 6, y2: height - 2, class: 'lease-now-line' }));
  return root;
}
