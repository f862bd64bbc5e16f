import type { Command } from 'commander';
import { buildTestGuest } from '../../guest/build';

/** `cloudlet guest build`: the tiny test guest (Debian kernel + busybox), cached in .cache/guest. */
export function register(program: Command): void {
  const guest = program.command('guest').description('the tiny test guest built from Debian packages');
  guest.command('build')
    .description('build the test guest (kernel, initramfs, ext4 disk) unless the cached one is current')
    .option('--force', 'rebuild even when cached')
    .option('--json', 'print JSON')
    .action(async (o: { force?: boolean; json?: boolean }) => {
      const g = await buildTestGuest({ force: o.force, log: (s) => process.stderr.write(`${s}\n`) });
      if (o.json) process.stdout.write(JSON.stringify(g, null, 2) + '\n');
      else process.stdout.write(`test guest ${g.key} (kernel ${g.kernelRelease})\n  kernel ${g.kernel}\n  initrd ${g.initrd}\n  disk   ${g.disk}\n`);
    });
}
