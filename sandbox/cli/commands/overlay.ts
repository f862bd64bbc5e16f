/**
 * `cloudlet overlay create|info|verify|list`: overlays of local sandboxes, and what they are made of.
 * (`overlay publish|pull` are added to this group by publish.ts.) Progress goes to stderr; stdout
 * carries the result (text, or JSON with --json).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { CloudletError } from '../../common/errors';
import { storePaths } from '../../common/paths';
import type { ProgressEvent, ProgressSink } from '../../common/progress';
import { SandboxManager } from '../../sandboxes/sandboxManager';
import { formatOverlayInfo, overlayInfo, OverlayReader, verifyOverlay } from '../../overlay';
import { formatBytes } from '../../common/bytes';
import { createSandboxOverlay } from '../../overlay/sandboxOverlay';
import { formatDiscard, parseDiscardOption } from '../../overlay/discard';
import { BUILD_LEVEL, parseProfile, PROFILES, recompressOverlay } from '../../overlay/recompress';
import { folderLookup, resolveChain, type ChainHop } from '../../overlay/parentChain';
import { flattenOverlay } from '../../overlay/flatten';

/** Progress on the console: one bar per phase on a terminal, one line per phase otherwise. */
export function consoleProgress(label: string): { sink: ProgressSink; stop: () => void } {
  const tty = process.stderr.isTTY;
  let bar: SingleBar | undefined;
  let phase = '';
  const stop = () => { bar?.stop(); bar = undefined; };
  const sink = (e: ProgressEvent) => {
    if (e.phase !== phase) {
      stop();
      phase = e.phase;
      if (!tty || !e.total) process.stderr.write(`${label}: ${e.phase}${e.message ? ` - ${e.message}` : ''}\n`);
    }
    if (tty && e.total) {
      if (!bar) {
        bar = new SingleBar({ format: `${label}: ${e.phase.padEnd(11)} [{bar}] {percentage}% {doneH}/{totalH}`, stream: process.stderr, hideCursor: true }, Presets.shades_classic);
        bar.start(e.total, 0, { doneH: '0', totalH: formatBytes(e.total) });
      }
      bar.setTotal(e.total);
      bar.update(e.done ?? 0, { doneH: formatBytes(e.done ?? 0), totalH: formatBytes(e.total) });
    }
  };
  return { sink, stop };
}

/** Ctrl-C aborts the signal (the job cleans up and throws Cancelled); a second Ctrl-C exits. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSig = () => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write('\ncancelling (cleaning up; Ctrl-C again to quit at once)\n');
    ac.abort();
  };
  process.on('SIGINT', onSig);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSig) };
}

/** An overlay file path, or an overlay ID (or unique prefix of 6+ hex) in the store's overlays/. */
export function resolveOverlayPath(arg: string): string {
  if (fs.existsSync(arg)) return arg;
  if (/^[a-f0-9]{6,64}$/.test(arg)) {
    const dir = storePaths().overlays;
    const hits = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith(arg) && f.endsWith('.overlay')) : [];
    if (hits.length === 1) return path.join(dir, hits[0]);
    if (hits.length > 1) throw new CloudletError('BadInput', `overlay ID prefix ${arg} matches ${hits.length} overlays; give more digits`);
  }
  throw new CloudletError('NotFound', `no overlay file or stored overlay ID "${arg}"`, { hint: 'cloudlet overlay list' });
}

/** A child overlay's chain (root first), its parents from the store's overlays/ or the file's folder. */
async function chainOf(r: OverlayReader, file: string, readers: OverlayReader[]): Promise<ChainHop[]> {
  return resolveChain({ manifest: r.manifest, overlayId: r.overlayId, source: r }, folderLookup([storePaths().overlays, path.dirname(path.resolve(file))], readers));
}

function intOption(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new CloudletError('BadInput', `${what} must be an integer, not ${JSON.stringify(v)}`);
  return n;
}

export function register(program: Command): void {
  const overlay = program.commands.find((c) => c.name() === 'overlay')
    ?? program.command('overlay').description('VM overlays: create, inspect, verify, publish and pull');

  overlay.command('create <sandbox>')
    .description('pause a sandbox, save its state and write the overlay against its base (the sandbox stays paused)')
    .option('--level <n>', 'zstd level of the build profile (default 3)')
    .option('--profile <name>', 'build (zstd 3, fast) or wire (xz 9 units, smaller: written as build, then re-compressed; same overlay ID)', 'build')
    .option('--threads <n>', 'compression threads (default: CPU count)')
    .option('--out <file>', 'write here instead of the store\'s overlays/<id>.overlay')
    .option('--discard <what>', 'before pausing a running sandbox, leave out what the guest freed: both, memory, disk or none', 'both')
    .option('--parent <overlayId>', 'store only what changed since this overlay (in the store\'s overlays/, e.g. the one the sandbox was synthesized from): a child overlay, synthesized with its parent chain (at most 4 deep)')
    .option('--json', 'print the result as JSON')
    .action(async (sandbox: string, o: { level?: string; profile: string; threads?: string; out?: string; discard: string; parent?: string; json?: boolean }) => {
      const discard = parseDiscardOption(o.discard);
      const profile = parseProfile(o.profile);
      const level = o.level ? intOption(o.level, '--level') : BUILD_LEVEL;
      const manager = new SandboxManager();
      const { sink, stop } = consoleProgress('overlay');
      const { signal, dispose } = interruptSignal();
      try {
        const r = await createSandboxOverlay(manager, sandbox, {
          level, threads: o.threads ? intOption(o.threads, '--threads') : undefined,
          outFile: o.out, signal, progress: sink, discard, parent: o.parent,
        });
        if (profile === 'wire') {
          // Same ID, same place: the build file is replaced by its wire re-compression.
          const w = await recompressOverlay(r.path, `${r.path}.wire`, { codec: PROFILES.wire, signal, progress: sink });
          fs.renameSync(w.path, r.path);
          Object.assign(r, { manifest: w.manifest, bytes: w.bytes });
        }
        stop();
        const info = overlayInfo(r.manifest, { overlayId: r.overlayId, fileBytes: r.bytes });
        if (o.json) process.stdout.write(JSON.stringify({ overlayId: r.overlayId, path: r.path, bytes: r.bytes, timings: { ...r.timings, snapshotMs: r.snapshotMs }, discard: r.discard, info }) + '\n');
        else process.stdout.write(`${r.path}\n${formatOverlayInfo(info)}\n${r.discard ? `${formatDiscard(r.discard)}\n` : ''}created in ${((r.timings.totalMs + r.snapshotMs) / 1000).toFixed(1)} s\n`);
      } finally {
        stop(); dispose(); manager.close();
      }
    });

  overlay.command('info <overlay>')
    .description('what an overlay is made of: chunks and bytes by encoding and source, disk vs memory, compressed vs raw')
    .option('--json', 'print as JSON')
    .action(async (arg: string, o: { json?: boolean }) => {
      const file = resolveOverlayPath(arg);
      const r = OverlayReader.open(file);
      const readers: OverlayReader[] = [];
      try {
        // The chain when it resolves here; info still describes a child whose parents are elsewhere.
        let chain: ChainHop[] | undefined, unresolved: string | undefined;
        if (r.manifest.parent) {
          try { chain = await chainOf(r, file, readers); } catch (e) { unresolved = (e as Error).message; }
        }
        const info = overlayInfo(r.manifest, { overlayId: r.overlayId, fileBytes: r.fileSize, chain: chain?.map((h) => h.overlayId) });
        if (unresolved) process.stderr.write(`chain not resolved here: ${unresolved}\n`);
        process.stdout.write(o.json ? JSON.stringify(info) + '\n' : formatOverlayInfo(info) + '\n');
      } finally { r.close(); for (const x of readers) x.close(); }
    });

  overlay.command('verify <overlay>')
    .description('check every segment (digest, sizes, records, bounds); with --base, that it fits that base')
    .option('--base <base>', 'local base (name or ID) the overlay must be made for')
    .option('--json', 'print the result as JSON')
    .action(async (arg: string, o: { base?: string; json?: boolean }) => {
      const file = resolveOverlayPath(arg);
      const r = OverlayReader.open(file);
      const readers: OverlayReader[] = [];
      const { sink, stop } = consoleProgress('verify');
      try {
        const baseId = o.base ? new SandboxManager().bases.get(o.base).id : undefined;
        // A child overlay: its chain resolved (every parent's ID, base, VM and depth) and every hop verified.
        const chain = r.manifest.parent ? await chainOf(r, file, readers) : [{ manifest: r.manifest, overlayId: r.overlayId, source: r }];
        const hops = [];
        for (const h of chain) hops.push({ overlayId: h.overlayId, ...(await verifyOverlay(h, h.source, { baseId, progress: sink })) });
        const v = hops[hops.length - 1];
        stop();
        const chainIds = chain.length > 1 ? { chain: chain.map((h) => h.overlayId) } : {};
        if (o.json) process.stdout.write(JSON.stringify({ ok: true, ...v, ...chainIds }) + '\n');
        else {
          process.stdout.write(`overlay ${r.overlayId}: OK (${v.segments} segments, ${formatBytes(v.compressedBytes)} checked, ${v.chunks.disk} disk and ${v.chunks.ram} memory chunks)\n`);
          if (chain.length > 1) process.stdout.write(`chain: base -> ${chain.map((h) => h.overlayId.slice(0, 12)).join(' -> ')} (every parent found, its ID recomputed, same base and VM, verified)\n`);
        }
      } finally { stop(); r.close(); for (const x of readers) x.close(); }
    });

  overlay.command('flatten <overlay>')
    .description('a child overlay and its parent chain -> one overlay against the base (no parent; resets the chain depth)')
    .option('--out <file>', 'write here instead of the store\'s overlays/<id>.overlay')
    .option('--level <n>', 'zstd level (default: the child\'s)')
    .option('--json', 'print the result as JSON')
    .action(async (arg: string, o: { out?: string; level?: string; json?: boolean }) => {
      const file = resolveOverlayPath(arg);
      const r = OverlayReader.open(file);
      const readers: OverlayReader[] = [];
      const manager = new SandboxManager();
      const { sink, stop } = consoleProgress('flatten');
      const { signal, dispose } = interruptSignal();
      try {
        if (!r.manifest.parent) throw new CloudletError('BadInput', `overlay ${r.overlayId.slice(0, 12)} names no parent: it already is against the base`);
        const b = manager.bases.get(r.manifest.baseId);
        const f = await flattenOverlay({ manifest: r.manifest, overlayId: r.overlayId, source: r },
          folderLookup([storePaths().overlays, path.dirname(path.resolve(file))], readers),
          { baseId: b.id, ramFile: b.ram, diskFile: b.disk, ramDigests: b.ramDigests, diskDigests: b.diskDigests },
          { outFile: o.out, outDir: o.out ? undefined : manager.paths.overlays, workDir: manager.paths.tmp, level: o.level ? intOption(o.level, '--level') : undefined, signal, progress: sink });
        stop();
        if (o.json) process.stdout.write(JSON.stringify({ overlayId: f.overlayId, path: f.path, bytes: f.bytes, chain: f.chain }) + '\n');
        else process.stdout.write(`${f.path}\noverlay ${f.overlayId} (${formatBytes(f.bytes)}) against base ${b.id.slice(0, 12)}, flattened from base -> ${f.chain.map((id) => id.slice(0, 12)).join(' -> ')}\n`);
      } finally { stop(); dispose(); r.close(); for (const x of readers) x.close(); manager.close(); }
    });

  overlay.command('list')
    .description('overlays in the local store')
    .option('--json', 'print as JSON')
    .action((o: { json?: boolean }) => {
      const dir = storePaths().overlays;
      const rows = (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.overlay')).sort() : []).map((f) => {
        const file = path.join(dir, f);
        try {
          const r = OverlayReader.open(file);
          r.close();
          return { overlayId: r.overlayId, baseId: r.manifest.baseId, ...(r.manifest.parent ? { parent: r.manifest.parent } : {}), bytes: r.fileSize, path: file };
        } catch (e) {
          return { overlayId: f.replace(/\.overlay$/, ''), baseId: '?', bytes: fs.statSync(file).size, path: file, error: (e as Error).message };
        }
      });
      if (o.json) { process.stdout.write(JSON.stringify(rows) + '\n'); return; }
      if (!rows.length) { process.stdout.write(`no overlays in ${dir}\n`); return; }
      for (const r of rows) process.stdout.write(`${r.overlayId.slice(0, 12)}  base ${r.baseId.slice(0, 12)}  ${formatBytes(r.bytes).padStart(10)}  ${r.path}${'parent' in r && r.parent ? `  (child of ${r.parent.id.slice(0, 12)}, depth ${r.parent.depth})` : ''}\n`);
    });
}
