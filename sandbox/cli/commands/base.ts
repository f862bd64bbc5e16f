import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { readSshKey } from '../../guest/noCloud';
import { createBaseFrom, parseSize, type BaseSource } from '../../base/sources';
import { BaseStore, summarize } from '../../base/store';
import { SandboxManager } from '../../sandboxes/sandboxManager';
import type { ProgressEvent } from '../../common/progress';
import { formatBytes } from '../../common/bytes';

let lastProgress = 0;
/** Progress on stderr, at most a few lines a second for byte counts. */
export function progressLine(e: ProgressEvent): void {
  if (e.total && e.done !== undefined) {
    if (e.done !== e.total && Date.now() - lastProgress < 500) return;
    lastProgress = Date.now();
    process.stderr.write(`  ${e.phase} ${e.message ?? ''} ${Math.round((100 * e.done) / e.total)}%\n`);
  } else process.stderr.write(`  ${e.phase}: ${e.message ?? ''}\n`);
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `cloudlet base create|list|show|verify|export|import|delete` over the store in CLOUDLET_HOME. */
export function register(program: Command): void {
  const base = program.command('base').description('base VM bundles (disk, RAM, device state, digests, manifest)');

  base.command('create')
    .description('make a base: build or take a guest, boot it, wait until ready, pause and save it')
    .requiredOption('--name <name>', 'base name')
    .option('--test-guest', 'the tiny busybox test guest (built from Debian packages if needed)')
    .option('--debian <suite>', 'a Debian guest built from Debian packages (bookworm = Debian 12; needs root)')
    .option('--image <file>', 'a qcow2, raw or vmdk disk image (e.g. a cloud image), booted through its own boot loader')
    .option('--disk <file|size>', 'a raw disk image to boot (copied); with --debian or --image: the disk size, e.g. 4G')
    .option('--package <name>', 'with --debian: an extra Debian package to install (repeat)', collect, [])
    .option('--hostname <name>', 'with --image: the guest\'s host name (default: from --name)')
    .option('--user <name>', 'with --image: a user cloud-init creates (sudo, and --ssh-key)')
    .option('--ssh-key <file>', 'with --image: an SSH public key file to authorise')
    .option('--kernel <file>', 'with --disk FILE: kernel to boot with (needs --initrd)')
    .option('--initrd <file>', 'initrd')
    .option('--append <cmdline>', 'kernel command line')
    .option('--ram <MiB>', 'guest RAM in MiB (default: 128 test guest, 1024 Debian and images, 256 disk)')
    .option('--vcpus <n>', 'virtual CPUs', '1')
    .option('--cpu <model>', 'CPU model with optional +feat/-feat flags, e.g. qemu64,+ssse3 (every host that resumes the base must provide it)', 'qemu64')
    .option('--port <guestPort>', 'guest TCP port to forward on resume (repeat)', collect, [])
    .option('--ready-marker <text>', 'ready when the serial console prints this')
    .option('--no-agent', 'do not wait for the guest agent (then give --ready-marker)')
    .option('--timeout <s>', 'readiness timeout in seconds (default 300; 900 for Debian and images)')
    .option('--json', 'print JSON')
    .action(async (o: Record<string, any>) => {
      const kinds = ['testGuest', 'debian', 'image'].filter((k) => o[k] !== undefined);
      if (kinds.length > 1) throw new CloudletError('BadInput', 'give one of --test-guest, --debian SUITE, --image FILE, --disk FILE');
      const sized = o.debian !== undefined || o.image !== undefined;
      const diskBytes = sized && o.disk !== undefined ? parseSize(o.disk) : undefined;
      const only = (flag: string, value: unknown, allowed: boolean, where: string) => {
        if (value !== undefined && !(Array.isArray(value) && !value.length) && !allowed) throw new CloudletError('BadInput', `${flag} goes with ${where}`);
      };
      only('--package', o.package, o.debian !== undefined, '--debian');
      for (const [flag, v] of [['--hostname', o.hostname], ['--user', o.user], ['--ssh-key', o.sshKey]] as const) only(flag, v, o.image !== undefined, '--image');
      for (const [flag, v] of [['--kernel', o.kernel], ['--initrd', o.initrd]] as const) only(flag, v, !sized && !o.testGuest, '--disk FILE');
      let src: BaseSource;
      if (o.testGuest) src = { kind: 'test-guest' };
      else if (o.debian !== undefined) src = { kind: 'debian', suite: o.debian, packages: o.package, diskBytes };
      else if (o.image !== undefined) {
        src = { kind: 'image', file: o.image, diskBytes, hostname: o.hostname, user: o.user, sshKey: o.sshKey ? readSshKey(o.sshKey) : undefined };
      } else if (o.disk !== undefined) src = { kind: 'disk', disk: o.disk, kernel: o.kernel, initrd: o.initrd, append: o.append };
      else throw new CloudletError('BadInput', 'give one of --test-guest, --debian SUITE, --image FILE, --disk FILE');
      const num = (v: unknown, what: string) => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n <= 0) throw new CloudletError('BadInput', `${what} ${JSON.stringify(v)} is not a positive whole number`);
        return n;
      };
      const readiness = {
        ...(o.readyMarker !== undefined ? { consoleMarker: String(o.readyMarker) } : {}),
        ...(o.agent === false ? { agent: false } : {}),
        ...(o.timeout !== undefined ? { timeoutMs: num(o.timeout, '--timeout')! * 1000 } : {}),
      };
      // Ctrl-C (or a terminal closing) ends the build or the boot cleanly: nothing is left in the store.
      const ac = new AbortController();
      const onSignal = () => { if (ac.signal.aborted) process.exit(130); ac.abort(); };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      process.on('SIGHUP', onSignal);
      try {
        const b = await createBaseFrom(new BaseStore(), src, {
          name: o.name, ramMiB: num(o.ram, '--ram'), vcpus: num(o.vcpus, '--vcpus'), cpuModel: o.cpu,
          ports: o.port.length ? (o.port as string[]).map((p) => num(p, '--port')!) : undefined,
          readiness, onProgress: o.json ? undefined : progressLine, signal: ac.signal,
        });
        if (o.json) process.stdout.write(JSON.stringify({ ...summarize(b), readyAfterMs: b.manifest.readiness.readyAfterMs, origin: b.manifest.origin }, null, 2) + '\n');
        else process.stdout.write(`${b.id}\n`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onSignal);
      }
    });

  base.command('list').description('list local bases').option('--json', 'print JSON').action((o: { json?: boolean }) => {
    const all = new BaseStore().list().map(summarize);
    if (o.json) { process.stdout.write(JSON.stringify(all, null, 2) + '\n'); return; }
    if (!all.length) { process.stdout.write('no bases (cloudlet base create --test-guest --name test)\n'); return; }
    process.stdout.write('BASE ID       NAME                 CPU       RAM       DISK      PORTS\n');
    for (const b of all) {
      process.stdout.write(`${b.baseId.slice(0, 12)}  ${b.name.padEnd(20)} ${b.cpuModel.padEnd(9)} ${formatBytes(b.ramBytes).padEnd(9)} ${formatBytes(b.diskBytes).padEnd(9)} ${b.ports.join(',') || '-'}\n`);
    }
  });

  base.command('show <base>').description('show a base manifest').option('--json', 'print JSON').action((ref: string, o: { json?: boolean }) => {
    const b = new BaseStore().get(ref);
    if (o.json) { process.stdout.write(JSON.stringify({ ...b.manifest, dir: b.dir }, null, 2) + '\n'); return; }
    const m = b.manifest;
    process.stdout.write([
      `base     ${m.baseId}`, `name     ${m.name}`, `created  ${m.createdAt} (QEMU ${m.qemu.version}, ${m.qemu.accel})`,
      `vm       ${m.vm.machine}, cpu ${m.vm.cpuModel}, ${m.vm.vcpus} vCPU, ${formatBytes(m.vm.ramBytes)} RAM, ${m.vm.nic.model} ${m.vm.nic.mac}`,
      `ports    ${m.ports.join(', ') || '-'}`, `folder   ${b.dir}`, 'files:',
      ...Object.entries(m.files).map(([n, f]) => `  ${n.padEnd(13)} ${String(f!.bytes).padStart(12)}  ${f!.sha256}`),
    ].join('\n') + '\n');
  });

  base.command('verify <base>').description('check every file and every 4 KiB chunk against the manifest').option('--json', 'print JSON')
    .action(async (ref: string, o: { json?: boolean }) => {
      const b = await new BaseStore().verify(ref);
      if (o.json) process.stdout.write(JSON.stringify({ baseId: b.id, ok: true }) + '\n');
      else process.stdout.write(`base ${b.id}: ok (${Object.keys(b.manifest.files).length} files, ${formatBytes(b.bytes)})\n`);
    });

  base.command('export <base> <file>').description('write the base to one file (a tar archive, manifest first)').option('--json', 'print JSON')
    .action(async (ref: string, file: string, o: { json?: boolean }) => {
      const r = await new BaseStore().export(ref, file, o.json ? undefined : progressLine);
      if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
      else process.stdout.write(`exported ${r.baseId} to ${r.file} (${formatBytes(r.bytes)})\n`);
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
