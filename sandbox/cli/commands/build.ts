/**
 * `cloudlet build [WORKSPACE]`: cloudlet.yaml -> resumed base -> copy, install, start, ready ->
 * pause -> overlay, with progress on the console. Ctrl-C cancels: the build sandbox is removed and
 * no overlay file appears.
 */
import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { SandboxManager } from '../../sandboxes/sandboxManager';
import { formatOverlayInfo, overlayInfo } from '../../overlay';
import { formatDiscard } from '../../overlay/discard';
import { loadBuildFile } from '../../build/buildFile';
import { runBuild } from '../../build/build';
import { consoleProgress, interruptSignal } from './overlay';

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function register(program: Command): void {
  program.command('build [workspace]')
    .description('build the back-end described by WORKSPACE/cloudlet.yaml in a sandbox and create its overlay')
    .option('--file <file>', 'build file (default WORKSPACE/cloudlet.yaml)')
    .option('--base <base>', 'base name or ID (overrides the file)')
    .option('--level <n>', 'zstd level (default 3)')
    .option('--out <file>', 'overlay file (default: the store\'s overlays/<id>.overlay)')
    .option('--rm', 'delete the build sandbox afterwards (default: keep it paused)')
    .option('--keep-failed', 'keep the sandbox of a failed build for inspection')
    .option('--check', 'only validate the build file')
    .option('--json', 'print the result as JSON')
    .action(async (workspace: string | undefined, o: { file?: string; base?: string; level?: string; out?: string; rm?: boolean; keepFailed?: boolean; check?: boolean; json?: boolean }) => {
      const spec = loadBuildFile(o.file ?? workspace ?? '.');
      if (o.check) { process.stdout.write(o.json ? JSON.stringify(spec) + '\n' : `${o.file ?? workspace ?? '.'}: OK\n`); return; }
      const level = o.level !== undefined ? Number(o.level) : undefined;
      if (level !== undefined && !Number.isInteger(level)) throw new CloudletError('BadInput', '--level must be an integer');
      const manager = new SandboxManager();
      const { sink, stop } = consoleProgress('build');
      const { signal, dispose } = interruptSignal();
      try {
        const r = await runBuild(manager, spec, {
          base: o.base, level, outFile: o.out, removeSandbox: o.rm, keepOnFailure: o.keepFailed, signal, progress: sink,
          log: (l) => { stop(); process.stderr.write(l.split('\n').map((x) => `  | ${x}`).join('\n') + '\n'); },
        });
        stop();
        const info = overlayInfo(r.overlay.manifest, { overlayId: r.overlay.overlayId, fileBytes: r.overlay.bytes });
        if (o.json) { process.stdout.write(JSON.stringify({ overlayId: r.overlay.overlayId, path: r.overlay.path, sandbox: r.kept ? r.sandbox.id : undefined, timings: r.timings, discard: r.overlay.discard, info }) + '\n'); return; }
        const t = r.timings;
        process.stdout.write([
          `built ${spec.name ?? 'app'} on base ${info.baseId.slice(0, 12)} in ${secs(t.totalMs)}`,
          `  resume ${secs(t.resumeMs)}, copy ${secs(t.copyMs)}, install ${secs(t.installMs)}, start ${secs(t.startMs)}, ready ${secs(t.readyMs)}, overlay ${secs(t.overlayMs)}`,
          `overlay ${r.overlay.path}`,
          formatOverlayInfo(info),
          ...(r.overlay.discard ? [formatDiscard(r.overlay.discard)] : []),
          r.kept ? `sandbox ${r.sandbox.id} kept (paused); remove it with: cloudlet sandbox delete ${r.sandbox.id}` : 'build sandbox removed',
          '',
        ].join('\n'));
      } finally {
        stop(); dispose(); manager.close();
      }
    });
}
