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
    .option('--public-url <url>', 'base URL others reach this daemon at (default http(s)://ADDR:PORT)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM; the chain after it)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM, unencrypted)')
    .option('--tls-self-signed', 'serve HTTPS with a self-signed certificate made once and kept in DATA/tls/ (its SHA-256 fingerprint is printed)')
    .option('--insecure-http', 'allow plain HTTP on a non-loopback address (passwords and tokens in the clear)')
    .option('--peer-ca <file>', 'a CA (PEM) to trust for calls to other cloudlets, besides the system store (repeatable)', collect, [])
    .option('--service-url <type=url>', 'catalog URL for one service type (repeatable)', collect, [])
    .option('--extra-listen <addr:port>', 'also listen on this address (repeatable)', collect, [])
    .option('--hash-password', 'read a password on stdin, print its hash for the config file, and exit')
    .action(async (o: { listen: string; data: string; config?: string; publicUrl?: string; serviceUrl: string[]; extraListen: string[]; hashPassword?: boolean }
      & { tlsCert?: string; tlsKey?: string; tlsSelfSigned?: boolean; insecureHttp?: boolean; peerCa: string[] }) => {
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
      const daemon = await startDaemon({
        host, port, dataDir: o.data, configFile: o.config, publicUrl: o.publicUrl, serviceUrls, extraListen: o.extraListen,
        listen: { tlsCert: o.tlsCert, tlsKey: o.tlsKey, tlsSelfSigned: o.tlsSelfSigned, insecureHttp: o.insecureHttp, peerCa: o.peerCa },
      });
      if (daemon.fingerprint) process.stderr.write(`cloudlet: HTTPS certificate SHA-256 fingerprint ${daemon.fingerprint}\n`);
      // One machine-readable line on stdout: scripts and tests read the URL (the port may be 0 = any).
      process.stdout.write(JSON.stringify({ listening: daemon.url, pid: process.pid, ...(daemon.fingerprint ? { fingerprint: daemon.fingerprint } : {}) }) + '\n');
      await new Promise<void>((resolve) => {
        const stop = () => { void daemon.close().then(resolve, resolve); };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}

function collect(v: string, prev: string[]): string[] { return [...prev, v]; }
