/**
 * The systemd unit of `cloudlet service install`: `cloudlet serve` as a service, hardened. A system
 * service runs as a dedicated user with no capabilities, sees the file system read-only except its
 * data folder, a private /tmp, and of the devices only /dev/kvm and /dev/net/tun. TLS files are
 * handed over with LoadCredential (systemd reads them as root; the service reads its private copy
 * in %d), so a key may stay root's (mode 0600).
 * Pure: text from options; sandbox/cli/commands/service.ts writes and enables it.
 */
import * as path from 'path';
import { CloudletError } from '../common/errors';

export interface UnitOptions {
  /** A user unit (systemctl --user): runs as the installing user, no dedicated one. */
  user: boolean;
  /** System unit: the account it runs as. */
  runAs?: string;
  /** Absolute paths of Node and the CLI (bin/cloudlet). */
  node: string;
  cli: string;
  listen: string;
  data: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsSelfSigned?: boolean;
  insecureHttp?: boolean;
  config?: string;
  publicUrl?: string;
  peerCa?: string[];
  /** Listen port below 1024: the one capability it then keeps. */
  privilegedPort?: boolean;
}

/** Paths systemd reads unquoted and we pass on: no white space, quotes, backslashes, % or control characters. */
export function checkUnitPath(p: string, what: string): string {
  if (!path.isAbsolute(p)) throw new CloudletError('BadInput', `${what} must be an absolute path: ${p}`);
  if (/[\s"'\\%$;`]/.test(p) || [...p].some((c) => c.charCodeAt(0) < 32)) throw new CloudletError('BadInput', `${what} ${JSON.stringify(p)} has characters a systemd unit would mangle (space, quote, backslash, %, $): use another path`);
  return path.normalize(p);
}

export function unitText(o: UnitOptions): string {
  const args = ['serve', '--listen', o.listen, '--data', o.data];
  const credentials: string[] = [];
  if (o.tlsCert && o.tlsKey) {
    if (o.user) args.push('--tls-cert', o.tlsCert, '--tls-key', o.tlsKey);
    else {
      credentials.push(`LoadCredential=tls.crt:${o.tlsCert}`, `LoadCredential=tls.key:${o.tlsKey}`);
      args.push('--tls-cert', '%d/tls.crt', '--tls-key', '%d/tls.key');
    }
  }
  if (o.tlsSelfSigned) args.push('--tls-self-signed');
  if (o.insecureHttp) args.push('--insecure-http');
  if (o.publicUrl) args.push('--public-url', o.publicUrl);
  (o.peerCa ?? []).forEach((f, i) => {
    if (o.user) args.push('--peer-ca', f);
    else { credentials.push(`LoadCredential=peer-ca-${i}.pem:${f}`); args.push('--peer-ca', `%d/peer-ca-${i}.pem`); }
  });
  // Read in place (it may name files beside it, e.g. identity.password_file): the service user reads it.
  if (o.config) args.push('--config', o.config);
  // Node, the CLI or the data under /home: that part of /home must stay visible.
  const underHome = [o.node, o.cli, o.data].some((p) => /^\/(home|root)\//.test(p));
  const lines = [
    '# Written by `cloudlet service install`; remove with `cloudlet service uninstall`.',
    '[Unit]',
    `Description=Cloudlet Toolkit daemon (cloudlet serve on ${o.listen})`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${o.node} ${o.cli} ${args.join(' ')}`,
    'Environment=NODE_ENV=production',
    ...credentials,
    'Restart=on-failure',
    'RestartSec=5',
    // VMs outlive a stop or a restart of the daemon by design: the next start adopts them.
    'KillMode=process',
    'TimeoutStopSec=60',
    ...(o.user ? [] : [
      `User=${o.runAs ?? 'cloudlet'}`,
      'SupplementaryGroups=kvm',
    ]),
    // Hardening. Not MemoryDenyWriteExecute: Node's JIT and QEMU's TCG write code at run time.
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    `ReadWritePaths=${o.data}`,
    `ProtectHome=${underHome ? 'read-only' : 'yes'}`,
    'PrivateTmp=yes',
    'DevicePolicy=closed',
    'DeviceAllow=/dev/kvm rw',
    'DeviceAllow=/dev/net/tun rw',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    ...(o.user ? [] : ['ProtectProc=invisible']),
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'SystemCallArchitectures=native',
    ...(o.user ? [] : o.privilegedPort
      ? ['CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'AmbientCapabilities=CAP_NET_BIND_SERVICE']
      : ['CapabilityBoundingSet=', 'AmbientCapabilities=']),
    'UMask=0027',
    '',
    '[Install]',
    `WantedBy=${o.user ? 'default.target' : 'multi-user.target'}`,
  ];
  return lines.join('\n') + '\n';
}
