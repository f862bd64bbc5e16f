/**
 * Hand-made SVG charts: a donut of what an overlay is made of, and a phase timeline (Gantt) for
 * synthesis and handoff. Colours come from CSS classes bound to VS Code's chart theme variables.
 */
import type { ChartSlice, PhaseState, TimelineView } from '../extension/protocol';
import { formatMs, svg } from './dom';


export function renderDonut(slices: ChartSlice[], centre: string, sub: string): SVGElement {
  const size = 180, r = 70, w = 26, c = size / 2;
  const root = svg('svg', { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: 'img', class: 'donut' });
  root.append(svg('title', {}, slices.map((s) => `${s.label}: ${(s.share * 100).toFixed(1)}%`).join('\n')));
  root.append(svg('circle', { cx: c, cy: c, r, class: 'donut-track', 'stroke-width': w, fill: 'none' }));
  let angle = -Math.PI / 2;
  for (const s of slices) {
    if (s.share <= 0) continue;
    const sweep = Math.min(s.share, 0.9999) * Math.PI * 2;
    const x1 = c + r * Math.cos(angle), y1 = c + r * Math.sin(angle);
    const x2 = c + r * Math.cos(angle + sweep), y2 = c + r * Math.sin(angle + sweep);
    const large = sweep > Math.PI ? 1 : 0;
    const path = svg('path', { d: `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${r} ${r} 0 ${large} 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`,
      class: `slice enc-${s.encoding} area-${s.area}`, 'stroke-width': w, fill: 'none' });
    path.append(svg('title', {}, `${s.label}: ${(s.share * 100).toFixed(1)}%`));
    root.append(path);
    angle += sweep;
  }
  root.append(svg('text', { x: c, y: c - 2, class: 'donut-centre', 'text-anchor': 'middle' }, centre));
  root.append(svg('text', { x: c, y: c + 16, class: 'donut-sub', 'text-anchor': 'middle' }, sub));
  return root;
}

export function renderTimeline(phases: PhaseState[], now: number, downtimeMs?: number): SVGElement {
  const rowH = 24, labelW = 150, width = 640, pad = 8;
  const t0 = phases[0].startedAt;
  const t1 = Math.max(...phases.map((p) => p.endedAt ?? now), t0 + 1);
  const scale = (t: number) => labelW + ((t - t0) / (t1 - t0)) * (width - labelW - pad);
  const height = phases.length * rowH + 30;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', class: 'gantt', role: 'img' });
  phases.forEach((p, i) => {
    const y = i * rowH + 4;
    const x = scale(p.startedAt), x2 = scale(p.endedAt ?? now);
    const downtime = /pause|final|downtime|switch|resume-dest|last/i.test(p.name) && downtimeMs !== undefined;
    root.append(svg('text', { x: 0, y: y + 15, class: 'gantt-label' }, p.name));
    const bar = svg('rect', { x, y, width: Math.max(2, x2 - x), height: rowH - 8, rx: 3, class: `gantt-bar${p.endedAt === undefined ? ' open' : ''}${downtime ? ' downtime' : ''}` });
    bar.append(svg('title', {}, `${p.name}: ${p.endedAt !== undefined ? formatMs(p.endedAt - p.startedAt) : 'running'}`));
    root.append(bar);
    if (p.endedAt !== undefined) root.append(svg('text', { x: Math.min(x2 + 4, width - 50), y: y + 13, class: 'gantt-dur' }, formatMs(p.endedAt - p.startedAt)));
  });
  const axisY = phases.length * rowH + 10;
  root.append(svg('line', { x1: labelW, x2: width - pad, y1: axisY, y2: axisY, class: 'gantt-axis' }));
  root.append(svg('text', { x: labelW, y: axisY + 14, class: 'gantt-tick' }, '0'));
  root.append(svg('text', { x: width - pad, y: axisY + 14, class: 'gantt-tick', 'text-anchor': 'end' }, formatMs(t1 - t0)));
  return root;
}

/** Leases per device on a time axis: one row per device, a bar per lease window, a line at now. */
export function renderLeaseAxis(t: TimelineView): SVGElement {
  const rowH = 40, labelW = 170, width = 820, pad = 24, top = 22;
  const x = (f: number) => labelW + f * (width - labelW - pad);
  const height = top + t.rows.length * rowH + 8;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', class: 'leases', role: 'img' });
  for (const tick of t.ticks) {
    root.append(svg('line', { x1: x(tick.at), x2: x(tick.at), y1: top - 4, y2: height - 4, class: 'lease-tick' }));
    root.append(svg('text', { x: x(tick.at), y: 12, class: 'gantt-tick', 'text-anchor': 'middle' }, tick.label));
  }
  t.rows.forEach((r, i) => {
    const y = top + i * rowH;
    root.append(svg('rect', { x: labelW, y: y + 4, width: width - labelW - pad, height: rowH - 10, class: 'lease-track', rx: 3 }));
    root.append(svg('text', { x: 0, y: y + 17, class: 'gantt-label' }, r.device));
    root.append(svg('text', { x: 0, y: y + 30, class: 'gantt-tick' }, r.machineName));
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
