/**
 * `cloudlet service install|status|uninstall`: the daemon as a systemd service (unit text:
 * sandbox/service/systemdUnit.ts). A system service (root) runs as a dedicated user `cloudlet`
 * (made with useradd when missing, in group kvm) owning the data folder; `--user` makes a user unit.
 * Options are checked the way `cloudlet serve` checks them before anything is written.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { projectRoot } from '../../common/paths';
import { checkUnitPath, unitText } from '../../service/systemdUnit';

interface InstallOptions {
  user?: boolean; listen: string; data: string; name: string; runAs?: string; unitDir?: string; enable: boolean;
  tlsCert?: string; tlsKey?: string; tlsSelfSigned?: boolean; insecureHttp?: boolean; config?: string; publicUrl?: string; peerCa: string[];
}

function unitDir(o: { user?: boolean; unitDir?: string }): string {
  if (o.unitDir) return o.unitDir;
  return o.user ? path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'systemd', 'user') : '/etc/systemd/system';
}

function systemctl(user: boolean | undefined, ...args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('systemctl', [...(user ? ['--user'] : []), ...args], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() };
}

function userExists(name: string): boolean {
  return spawnSync('id', ['-u', name], { encoding: 'utf8' }).status === 0;
}

function uidGid(name: string): [number, number] {
  const u = spawnSync('id', ['-u', name], { encoding: 'utf8' }), g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  return [Number(u.stdout.trim()), Number(g.stdout.trim())];
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function register(program: Command): void {
  const service = program.command('service').description('run the cloudlet daemon as a systemd service');

  service.command('install')
    .description('write and enable a hardened systemd unit running `cloudlet serve` (root: as user "cloudlet"; --user: a user unit)')
    .option('--user', 'a user unit (systemctl --user), running as you')
    .requiredOption('--listen <addr:port>', 'address and port to listen on (off loopback: with --tls-*)')
    .requiredOption('--data <dir>', 'state folder, absolute (made and given to the service user)')
    .option('--tls-cert <file>', 'certificate (PEM), handed to the service by systemd')
    .option('--tls-key <file>', 'its key (PEM; may stay root\'s, mode 0600)')
    .option('--tls-self-signed', 'a self-signed certificate made by the daemon in DATA/tls (fingerprint: `cloudlet service status`)')
    .option('--insecure-http', 'plain HTTP off loopback (not recommended)')
    .option('--config <file>', 'daemon config (YAML), readable by the service user')
    .option('--public-url <url>', 'base URL others reach it at')
    .option('--peer-ca <file>', 'a CA trusted for calls to other cloudlets (repeatable)', collect, [])
    .option('--name <name>', 'unit name', 'cloudlet')
    .option('--run-as <user>', 'system unit: an existing account instead of "cloudlet"')
    .option('--unit-dir <dir>', 'write the unit here instead of systemd\'s folder (to inspect it)')
    .option('--no-enable', 'only write the unit; do not run systemctl')
    .action(async (o: InstallOptions) => {
      const { splitHostPort } = await import('../../cloudlet/daemon');
      const { isLoopback, loadTls } = await import('../../cloudlet/listen');
      const { readCaFile } = await import('../../client/transport');
      if (!/^[\w@.-]+$/.test(o.name)) throw new CloudletError('BadInput', `--name ${o.name}: letters, digits, @ . _ - only`);
      const [host, port] = splitHostPort(o.listen);
      const data = checkUnitPath(path.resolve(o.data), '--data');
      // The service has a private /tmp: a data folder there would be another, empty one each start.
      if (/^\/(var\/)?tmp(\/|$)/.test(data)) throw new CloudletError('BadInput', `--data ${data}: the service gets a private /tmp; give a lasting folder, e.g. /var/lib/cloudlet`);
      if (!o.user && process.geteuid?.() !== 0 && !o.unitDir) throw new CloudletError('Forbidden', 'a system service needs root', { hint: 'run it with sudo, or give --user for a user unit' });
      // The same rules `cloudlet serve` applies, checked now rather than when the service starts.
      if ((o.tlsCert && !o.tlsKey) || (!o.tlsCert && o.tlsKey)) throw new CloudletError('BadInput', '--tls-cert and --tls-key go together');
      if (o.tlsSelfSigned && o.tlsCert) throw new CloudletError('BadInput', '--tls-self-signed or --tls-cert/--tls-key, not both');
      const tls = !!(o.tlsCert || o.tlsSelfSigned);
      if (!tls && !isLoopback(host) && !o.insecureHttp) {
        throw new CloudletError('BadInput', `refusing plain HTTP on ${host}: give --tls-self-signed or --tls-cert/--tls-key (or --insecure-http)`);
      }
      const tlsCert = o.tlsCert ? checkUnitPath(path.resolve(o.tlsCert), '--tls-cert') : undefined;
      const tlsKey = o.tlsKey ? checkUnitPath(path.resolve(o.tlsKey), '--tls-key') : undefined;
      if (tlsCert && tlsKey) loadTls(tlsCert, tlsKey);
      const peerCa = o.peerCa.map((f) => { const p = checkUnitPath(path.resolve(f), '--peer-ca'); readCaFile(p); return p; });
      const config = o.config ? checkUnitPath(path.resolve(o.config), '--config') : undefined;
      if (config && !fs.existsSync(config)) throw new CloudletError('BadInput', `--config ${config}: no such file`);

      const node = checkUnitPath(process.execPath, 'node');
      const cli = checkUnitPath(fs.realpathSync(path.join(projectRoot(), 'bin', 'cloudlet')), 'the cloudlet CLI');
      let runAs: string | undefined;
      if (!o.user) {
        runAs = o.runAs ?? 'cloudlet';
        if (!userExists(runAs)) {
          if (o.runAs) throw new CloudletError('BadInput', `--run-as ${runAs}: no such user`);
          const r = spawnSync('useradd', ['--system', '--user-group', '--home-dir', data, '--no-create-home', '--shell', '/usr/sbin/nologin', runAs], { encoding: 'utf8' });
          if (r.status !== 0) throw new CloudletError('Internal', `useradd ${runAs} failed: ${(r.stderr || r.error?.message || '').trim()}`, { hint: 'make the user yourself and give --run-as USER' });
          process.stderr.write(`cloudlet: made system user ${runAs}\n`);
        }
      }
      fs.mkdirSync(data, { recursive: true, mode: 0o750 });
      if (runAs && process.geteuid?.() === 0) {
        const [uid, gid] = uidGid(runAs);
        fs.chownSync(data, uid, gid);
      }

      const text = unitText({ user: !!o.user, runAs, node, cli, listen: o.listen, data, tlsCert, tlsKey, tlsSelfSigned: o.tlsSelfSigned,
        insecureHttp: o.insecureHttp, config, publicUrl: o.publicUrl, peerCa, privilegedPort: port > 0 && port < 1024 });
      const dir = unitDir(o);
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `${o.name}.service`);
      fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
      fs.renameSync(`${file}.tmp`, file);
      process.stdout.write(`wrote ${file}\n`);
      if (!o.enable) return;
      for (const args of [['daemon-reload'], ['enable', '--now', `${o.name}.service`]]) {
        const r = systemctl(o.user, ...args);
        if (!r.ok) throw new CloudletError('Unavailable', `systemctl ${o.user ? '--user ' : ''}${args.join(' ')} failed: ${r.out.split('\n')[0]}`, { hint: `the unit is written (${file}); is systemd running here?` });
      }
      process.stdout.write(`enabled and started ${o.name}.service; \`cloudlet service status${o.user ? ' --user' : ''}\` shows it\n`);
    });

  service.command('status')
    .description('whether the service is enabled and running, its address and certificate fingerprint')
    .option('--user', 'the user unit')
    .option('--name <name>', 'unit name', 'cloudlet')
    .option('--unit-dir <dir>', 'where the unit was written')
    .action(async (o: { user?: boolean; name: string; unitDir?: string }) => {
      const file = path.join(unitDir(o), `${o.name}.service`);
      if (!fs.existsSync(file)) throw new CloudletError('NotFound', `no service ${o.name} (${file} does not exist)`, { hint: 'cloudlet service install ...' });
      const exec = /^ExecStart=(.*)$/m.exec(fs.readFileSync(file, 'utf8'))?.[1] ?? '';
      const arg = (flag: string) => { const a = exec.split(' '); const i = a.indexOf(flag); return i >= 0 ? a[i + 1] : undefined; };
      const enabled = systemctl(o.user, 'is-enabled', `${o.name}.service`);
      const active = systemctl(o.user, 'is-active', `${o.name}.service`);
      const lines = [`unit     ${file}`, `listen   ${arg('--listen') ?? '?'}`, `data     ${arg('--data') ?? '?'}`,
        `enabled  ${enabled.out || 'unknown'}`, `active   ${active.out || 'unknown'}`];
      const certFile = exec.includes('--tls-self-signed') ? path.join(arg('--data') ?? '', 'tls', 'cert.pem') : undefined;
      if (certFile && fs.existsSync(certFile)) {
        const { certificateFingerprint } = await import('../../cloudlet/certificate');
        lines.push(`TLS      self-signed, SHA-256 fingerprint ${certificateFingerprint(fs.readFileSync(certFile, 'utf8'))}`);
      } else lines.push(`TLS      ${exec.includes('--tls-cert') ? 'certificate given' : exec.includes('--tls-self-signed') ? 'self-signed (not made yet: the daemon makes it at its first start)' : 'none (plain HTTP)'}`);
      process.stdout.write(lines.join('\n') + '\n');
    });

  service.command('uninstall')
    .description('stop and disable the service and remove its unit (the data folder stays)')
    .option('--user', 'the user unit')
    .option('--name <name>', 'unit name', 'cloudlet')
    .option('--unit-dir <dir>', 'where the unit was written')
    .action((o: { user?: boolean; name: string; unitDir?: string }) => {
      const file = path.join(unitDir(o), `${o.name}.service`);
      if (!fs.existsSync(file)) throw new CloudletError('NotFound', `no service ${o.name} (${file} does not exist)`);
      const data = /--data (\S+)/.exec(fs.readFileSync(file, 'utf8'))?.[1];
      const stop = systemctl(o.user, 'disable', '--now', `${o.name}.service`);
      if (!stop.ok) process.stderr.write(`cloudlet: systemctl disable --now ${o.name}.service: ${stop.out.split('\n')[0]} (removing the unit all the same)\n`);
      fs.rmSync(file);
      systemctl(o.user, 'daemon-reload');
      process.stdout.write(`removed ${file}${data ? `; the data folder ${data} stays (VMs in it keep running until stopped)` : ''}\n`);
    });
}
