import * as fs from 'fs';
import type { Command } from 'commander';
import { cloudletHome } from '../../common/paths';
import { CloudletError } from '../../common/errors';

/** `cloudlet serve`: run the cloudlet daemon (the local sandbox or a remote cloudlet). */
export function register(program: Command): void {
  program.command('serve')
    .description('run the cloudlet daemon (OpenStack-compatible API: Keystone, Nova, Glance, Blazar, Zun, inventory)')
    .option('--listen <addr:port>', 'address and port to listen on', '127.0.0.1:8774')
    .option('--data <dir>', 'state folder (bases, VMs, images, database)', cloudletHome())
    .option('--config <file>', 'YAML config: users, projects, roles, token_ttl_seconds, max_servers, overlay_max_bytes')
    .option('--public-url <url>', 'base URL others reach this daemon at (default http://ADDR:PORT)')
    .option('--service-url <type=url>', 'catalog URL for one service type (repeatable)', collect, [])
    .option('--extra-listen <addr:port>', 'also listen on this address (repeatable)', collect, [])
    .option('--hash-password', 'read a password on stdin, print its hash for the config file, and exit')
    .action(async (o: { listen: string; data: string; config?: string; publicUrl?: string; serviceUrl: string[]; extraListen: string[]; hashPassword?: boolean }) => {
      if (o.hashPassword) {
        const { hashPassword } = await import('../../cloudlet/passwords');
        process.stdout.write(hashPassword(fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '')) + '\n');
        return;
      }
      const { startDaemon, splitHostPort } = await import('../../cloudlet/daemon');
      const [host, port] = splitHostPort(o.listen);
      const serviceUrls: Record<string, string> = {};
      for (const s of o.serviceUrl) {
        const i = s.indexOf('=');
        if (i <= 0) throw new CloudletError('BadInput', `--service-url wants TYPE=URL, got ${s}`);
        serviceUrls[s.slice(0, i)] = s.slice(i + 1).replace(/\/$/, '');
      }
      const daemon = await startDaemon({ host, port, dataDir: o.data, configFile: o.config, publicUrl: o.publicUrl, serviceUrls, extraListen: o.extraListen });
      // One machine-readable line on stdout: scripts and tests read the URL (the port may be 0 = any).
      process.stdout.write(JSON.stringify({ listening: daemon.url, pid: process.pid }) + '\n');
      await new Promise<void>((resolve) => {
        const stop = () => { void daemon.close().then(resolve, resolve); };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}

function collect(v: string, prev: string[]): string[] { return [...prev, v]; }
