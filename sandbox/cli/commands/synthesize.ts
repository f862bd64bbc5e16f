/**
 * `cloudlet synthesize BASE OVERLAY`: VM synthesis in the local sandbox (verify, decode segments in
 * parallel, build the launch RAM + qcow2, resume). With --cloudlet URL OVERLAY it asks that cloudlet
 * instead (remote.ts, through sandbox/client).
 */
import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { SandboxManager } from '../../sandboxes/sandboxManager';
import { synthesize } from '../../overlay/sandboxOverlay';
import { consoleProgress, interruptSignal, resolveOverlayPath } from './overlay';
import { synthesizeOnCloudlet } from './remote';
import { synthesizeOnNearest } from './nearest';
import { isTcpPort } from '../../common/tcpPort';
import { REGISTRY_AUTH_MODES, type RegistryAuthMode } from '../../registry/synthesisLogin';

export function register(program: Command): void {
  program.command('synthesize <base> [overlay]')
    .description('VM synthesis: base + overlay -> the launch VM, resumed (with --cloudlet: synthesize OVERLAY on that cloudlet)')
    .option('--name <name>', 'sandbox name')
    .option('--port <guest>', 'extra guest port to forward (repeatable)', (v: string, acc: number[]) => [...acc, Number(v)], [] as number[])
    .option('--cloudlet <url>', 'synthesize on this cloudlet instead of locally (then the only argument is the overlay); with --nearest: choose among this login\'s cloudlets')
    .option('--nearest', 'synthesize OVERLAY on the nearest cloudlet holding its base (round-trip probes, median; the table is shown)')
    .option('--probes <n>', 'with --nearest: round trips per cloudlet', (v: string) => Number(v), 5)
    .option('--json', 'print the sandbox as JSON')
    .option('--registry-auth <mode>', 'with --cloudlet or --nearest and an oci:// OVERLAY: when your stored login to its registry goes to the cloudlet: auto (only after the registry refused the anonymous pull), always, never', 'auto')
    .option('--no-registry-auth', 'same as --registry-auth never (the cloudlet pulls anonymously)')
    .action(async (a: string, b: string | undefined, o: { name?: string; port: number[]; cloudlet?: string; nearest?: boolean; probes: number; json?: boolean; registryAuth: string | boolean }) => {
      const registryAuth = o.registryAuth === false ? 'never' : o.registryAuth === true ? 'auto' : o.registryAuth as RegistryAuthMode;
      if (!REGISTRY_AUTH_MODES.includes(registryAuth)) throw new CloudletError('BadInput', `--registry-auth takes auto, always or never, not ${String(o.registryAuth)}`);
      if (o.nearest) {
        if (b) throw new CloudletError('BadInput', 'usage: cloudlet synthesize --nearest OVERLAY');
        if (!Number.isInteger(o.probes) || o.probes < 1 || o.probes > 50) throw new CloudletError('BadInput', '--probes takes 1 to 50');
        await synthesizeOnNearest(a, { cloudlet: o.cloudlet, name: o.name, ports: o.port.length ? o.port.join(',') : undefined, json: o.json, probes: o.probes, registryAuth });
        return;
      }
      if (o.cloudlet) {
        await synthesizeOnCloudlet(o.cloudlet, b ?? a, { name: o.name, ports: o.port.length ? o.port.join(',') : undefined, json: o.json, registryAuth });
        return;
      }
      if (!b) throw new CloudletError('BadInput', 'usage: cloudlet synthesize BASE OVERLAY');
      for (const p of o.port) if (!isTcpPort(p)) throw new CloudletError('BadInput', `--port ${p} is not a TCP port`);
      const manager = new SandboxManager();
      const { sink, stop } = consoleProgress('synthesis');
      const { signal, dispose } = interruptSignal();
      try {
        const r = await synthesize(manager, a, resolveOverlayPath(b), { name: o.name, ports: o.port, signal, progress: sink });
        stop();
        if (o.json) { process.stdout.write(JSON.stringify({ ...r.sandbox, overlayId: r.overlayId, timings: r.timings }) + '\n'); return; }
        const ports = r.sandbox.ports.map((p) => `127.0.0.1:${p.host} -> guest ${p.guest}`).join(', ') || 'none';
        process.stdout.write(`sandbox ${r.sandbox.id} running (${r.sandbox.accel}), synthesized in ${(r.timings.totalMs / 1000).toFixed(2)} s (build ${(r.timings.applyMs / 1000).toFixed(2)} s, resume ${(r.timings.launchMs / 1000).toFixed(2)} s)\nports: ${ports}\n`);
      } finally {
        stop(); dispose(); manager.close();
      }
    });
}
