import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { buildTestGuest } from '../../guest/build';
import { BaseStore, summarize } from '../../base/store';
import { SandboxManager } from '../../sandboxes/sandboxManager';
import type { ProgressEvent } from '../../common/progress';

let lastProgress = 0;
/** Progress on stderr, at most a few lines a second for byte counts. */
export function progressLine(e: ProgressEvent): void {
  if (e.total && e.done !== undefined) {
    if (e.done !== e.total && Date.now() - lastProgress < 500) return;
    lastProgress = Date.now();
    process.stderr.write(`  ${e.phase} ${e.message ?? ''} ${Math.round((100 * e.done) / e.total)}%\n`);
  } else process.stderr.write(`  ${e.phase}: ${e.message ?? ''}\n`);
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `cloudlet base create|list|show|verify|export|import|delete` over the store in CLOUDLET_HOME. */
export function register(program: Command): void {
  const base = program.command('base').description('base VM bundles (disk, RAM, device state, digests, manifest)');

  base.command('create')
    .description('boot an image, wait until ready, pause and save it as a base')
    .requiredOption('--name <name>', 'base name')
    .option('--test-guest', 'use the tiny test guest (built if needed)')
    .option('--disk <file>', 'raw disk image to boot (copied)')
    .option('--kernel <file>', 'kernel to boot with (needs --initrd)')
    .option('--initrd <file>', 'initrd')
    .option('--append <cmdline>', 'kernel command line')
    .option('--ram <MiB>', 'guest RAM in MiB', '256')
    .option('--vcpus <n>', 'virtual CPUs', '1')
    .option('--cpu <model>', 'fixed CPU model (must exist on every host that resumes it)', 'qemu64')
    .option('--port <guestPort>', 'guest TCP port to forward on resume (repeat)', collect, [])
    .option('--ready-marker <text>', 'ready when the serial console prints this')
    .option('--no-agent', 'do not wait for the guest agent')
    .option('--timeout <s>', 'readiness timeout in seconds', '300')
    .option('--json', 'print JSON')
    .action(async (o: Record<string, any>) => {
      let { disk, kernel, initrd, append, readyMarker } = o;
      if (o.testGuest) {
        const g = await buildTestGuest({ log: (s) => process.stderr.write(`${s}\n`) });
        disk = g.disk; kernel = g.kernel; initrd = g.initrd; append ??= g.append; readyMarker ??= g.readyMarker;
        if (o.ram === '256') o.ram = '128';
        if (!o.port.length) o.port = ['80'];
      }
      if (!disk) throw new CloudletError('BadInput', 'give --disk FILE (and --kernel/--initrd), or --test-guest');
      const b = await new BaseStore().create({
        name: o.name, disk, kernel, initrd, append, ramMiB: Number(o.ram), vcpus: Number(o.vcpus), cpuModel: o.cpu,
        ports: (o.port as string[]).map(Number),
        readiness: { consoleMarker: readyMarker, agent: o.agent, timeoutMs: Number(o.timeout) * 1000 },
        onProgress: o.json ? undefined : progressLine,
      });
      if (o.json) process.stdout.write(JSON.stringify({ ...summarize(b), readyAfterMs: b.manifest.readiness.readyAfterMs }, null, 2) + '\n');
      else process.stdout.write(`${b.id}\n`);
    });

  base.command('list').description('list local bases').option('--json', 'print JSON').action((o: { json?: boolean }) => {
    const all = new BaseStore().list().map(summarize);
    if (o.json) { process.stdout.write(JSON.stringify(all, null, 2) + '\n'); return; }
    if (!all.length) { process.stdout.write('no bases (cloudlet base create --test-guest --name test)\n'); return; }
    process.stdout.write('BASE ID       NAME                 CPU       RAM       DISK      PORTS\n');
    for (const b of all) {
      process.stdout.write(`${b.baseId.slice(0, 12)}  ${b.name.padEnd(20)} ${b.cpuModel.padEnd(9)} ${mib(b.ramBytes).padEnd(9)} ${mib(b.diskBytes).padEnd(9)} ${b.ports.join(',') || '-'}\n`);
    }
  });

  base.command('show <base>').description('show a base manifest').option('--json', 'print JSON').action((ref: string, o: { json?: boolean }) => {
    const b = new BaseStore().get(ref);
    if (o.json) { process.stdout.write(JSON.stringify({ ...b.manifest, dir: b.dir }, null, 2) + '\n'); return; }
    const m = b.manifest;
    process.stdout.write([
      `base     ${m.baseId}`, `name     ${m.name}`, `created  ${m.createdAt} (QEMU ${m.qemu.version}, ${m.qemu.accel})`,
      `vm       ${m.vm.machine}, cpu ${m.vm.cpuModel}, ${m.vm.vcpus} vCPU, ${mib(m.vm.ramBytes)} RAM, ${m.vm.nic.model} ${m.vm.nic.mac}`,
      `ports    ${m.ports.join(', ') || '-'}`, `folder   ${b.dir}`, 'files:',
      ...Object.entries(m.files).map(([n, f]) => `  ${n.padEnd(13)} ${String(f!.bytes).padStart(12)}  ${f!.sha256}`),
    ].join('\n') + '\n');
  });

  base.command('verify <base>').description('check every file and every 4 KiB chunk against the manifest').option('--json', 'print JSON')
    .action(async (ref: string, o: { json?: boolean }) => {
      const b = await new BaseStore().verify(ref);
      if (o.json) process.stdout.write(JSON.stringify({ baseId: b.id, ok: true }) + '\n');
      else process.stdout.write(`base ${b.id}: ok (${Object.keys(b.manifest.files).length} files, ${mib(b.bytes)})\n`);
    });

  base.command('export <base> <file>').description('write the base to one file (a tar archive, manifest first)').option('--json', 'print JSON')
    .action(async (ref: string, file: string, o: { json?: boolean }) => {
      const r = await new BaseStore().export(ref, file, o.json ? undefined : progressLine);
      if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
      else process.stdout.write(`exported ${r.baseId} to ${r.file} (${mib(r.bytes)})\n`);
    });

  base.command('import <file>').description('import an exported base; every digest is checked first').option('--json', 'print JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const r = await new BaseStore().import(file, o.json ? undefined : progressLine);
      if (o.json) process.stdout.write(JSON.stringify({ baseId: r.bundle.id, alreadyPresent: r.alreadyPresent }) + '\n');
      else process.stdout.write(`${r.alreadyPresent ? 'already present' : 'imported'}: ${r.bundle.id} (${r.bundle.name})\n`);
    });

  base.command('delete <base>').description('delete a base').option('--force', 'even if sandboxes use it').option('--json', 'print JSON')
    .action((ref: string, o: { force?: boolean; json?: boolean }) => {
      const store = new BaseStore();
      const b = store.get(ref);
      const id = store.delete(ref, { force: o.force, inUseBy: new SandboxManager().usersOfBase(b.id) });
      if (o.json) process.stdout.write(JSON.stringify({ baseId: id, deleted: true }) + '\n');
      else process.stdout.write(`deleted ${id}\n`);
    });
}
