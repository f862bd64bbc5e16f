import type { Command } from 'commander';
import { buildTestGuest } from '../../guest/build';
import { buildDebianGuest, fetchDebs } from '../../guest/debian';
import * as fs from 'fs';
import * as path from 'path';
import { parseSize } from '../../base/sources';
import { progressLine } from './base';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `cloudlet guest build`: the guests bases are made from, built from Debian packages and cached. */
export function register(program: Command): void {
  const guest = program.command('guest').description('guests built from Debian packages (the tiny test guest, Debian)');
  guest.command('build')
    .description('build the test guest (kernel, initramfs, ext4 disk), or with --debian a Debian guest, unless the cached one is current')
    .option('--debian <suite>', 'a Debian guest instead (bookworm = Debian 12; needs root), cached stage by stage')
    .option('--package <name>', 'with --debian: an extra Debian package (repeat)', collect, [])
    .option('--disk <size>', 'with --debian: disk size, e.g. 4G')
    .option('--cloud-image', 'with --debian: a cloud image instead (cloud-init, grub, no agent) as a qcow2, for `base create --image`')
    .option('--force', 'rebuild even when cached (test guest)')
    .option('--json', 'print JSON')
    .action(async (o: { debian?: string; package: string[]; disk?: string; cloudImage?: boolean; force?: boolean; json?: boolean }) => {
      if (o.debian !== undefined) {
        const ac = new AbortController();
        const onSignal = () => ac.abort();
        process.once('SIGINT', onSignal);
        try {
          const g = await buildDebianGuest(
            { suite: o.debian, packages: o.package, diskBytes: o.disk ? parseSize(o.disk) : undefined, flavor: o.cloudImage ? 'cloud-image' : 'agent' },
            { onProgress: o.json ? undefined : progressLine, signal: ac.signal });
          if (o.json) process.stdout.write(JSON.stringify(g, null, 2) + '\n');
          else process.stdout.write(`Debian ${g.suite} guest ${g.key} (${g.flavor})\n${g.image ? `  image  ${g.image}\n` : `  kernel ${g.kernel}\n  initrd ${g.initrd}\n  disk   ${g.disk}\n`}`);
        } finally { process.off('SIGINT', onSignal); }
        return;
      }
      const g = await buildTestGuest({ force: o.force, log: (s) => process.stderr.write(`${s}\n`) });
      if (o.json) process.stdout.write(JSON.stringify(g, null, 2) + '\n');
      else process.stdout.write(`test guest ${g.key} (kernel ${g.kernelRelease})\n  kernel ${g.kernel}\n  initrd ${g.initrd}\n  disk   ${g.disk}\n`);
    });

  guest.command('debs <packages...>')
    .description('download .deb files of packages and every dependency a Debian guest lacks, for `cloudlet build` to copy in (offline guests)')
    .requiredOption('--debian <suite>', 'the Debian guest (as built by base create --debian)')
    .option('--package <name>', 'extra packages the guest was built with (repeat)', collect, [])
    .requiredOption('--out <dir>', 'folder to put the .deb files in')
    .action(async (packages: string[], o: { debian: string; package: string[]; out: string }) => {
      const g = await buildDebianGuest({ suite: o.debian, packages: o.package }, { onProgress: progressLine });
      const debs = await fetchDebs(g, packages, { onProgress: progressLine });
      fs.mkdirSync(o.out, { recursive: true });
      const files = fs.readdirSync(debs).filter((f) => f.endsWith('.deb'));
      for (const f of files) fs.copyFileSync(path.join(debs, f), path.join(o.out, f));
      process.stdout.write(`${files.length} .deb files in ${o.out}\n`);
    });
}
