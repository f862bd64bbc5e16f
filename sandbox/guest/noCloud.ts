/**
 * A cloud-init NoCloud seed served over HTTP to a guest booting from its own image.
 *
 * The guest learns where the seed is from its SMBIOS serial number
 * (`ds=nocloud-net;s=http://10.0.2.2:PORT/`, cloud-init's documented form), and fetches meta-data
 * and user-data through QEMU's user networking, where 10.0.2.2 is the host's 127.0.0.1. Serving it
 * (rather than attaching a seed disk) keeps the VM's device set that of every other base, so the
 * base resumes with the same QEMU arguments; and the host sees whether cloud-init asked for it,
 * which tells an image without cloud-init apart from a slow one.
 *
 * The user-data installs the guest agent (sandbox/guest/agent.sh) as a systemd unit and starts it,
 * sets the hostname, and adds the developer's user and SSH key when given.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { stringify } from 'yaml';
import { CloudletError } from '../common/errors';
import { agentScriptPath, guestSourceDir } from './build';

/** The host's loopback as QEMU's user networking shows it to the guest. */
const SLIRP_HOST = '10.0.2.2';

export interface NoCloudOptions {
  hostname: string;
  /** A user to create (with sudo and the SSH key, when given). */
  user?: string;
  /** One SSH public key line (authorized_keys format). */
  sshKey?: string;
  /** Install and start the guest agent (default true). */
  agent?: boolean;
}

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const SSH_KEY = /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]{16,16384}( [^\r\n]{0,256})?$/;

/** A hostname from a base name: lower case, letters, digits and '-', at most 63. */
export function hostnameFrom(name: string): string {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return h || 'cloudlet-guest';
}

export function validateNoCloud(o: NoCloudOptions): void {
  if (!HOSTNAME.test(o.hostname)) throw new CloudletError('BadInput', `hostname ${JSON.stringify(o.hostname)} is not a host name (letters, digits, '-', at most 63)`);
  if (o.user !== undefined && (!USER.test(o.user) || o.user === 'root')) throw new CloudletError('BadInput', `user ${JSON.stringify(o.user)} is not a Linux user name (a-z, 0-9, _ and -, not root)`);
  if (o.sshKey !== undefined && !SSH_KEY.test(o.sshKey.trim())) {
    throw new CloudletError('BadInput', 'the SSH key is not one public key line (ssh-ed25519 AAAA... comment)', { hint: 'give the .pub file, e.g. --ssh-key ~/.ssh/id_ed25519.pub' });
  }
}

/** Reads an SSH public key file: exactly one key line. */
export function readSshKey(file: string): string {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { throw new CloudletError('BadInput', `cannot read the SSH key file ${file}`); }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (lines.length !== 1) throw new CloudletError('BadInput', `${file} should hold one SSH public key line, not ${lines.length}`);
  if (/PRIVATE KEY/.test(text)) throw new CloudletError('BadInput', `${file} is a private key: give the .pub file`);
  return lines[0];
}

export function userData(o: NoCloudOptions): string {
  const agent = o.agent ?? true;
  const doc: Record<string, unknown> = {
    hostname: o.hostname,
    preserve_hostname: false,
    manage_etc_hosts: true,
  };
  if (o.user) {
    const u: Record<string, unknown> = { name: o.user, shell: '/bin/bash', groups: ['sudo'], sudo: 'ALL=(ALL) NOPASSWD:ALL', lock_passwd: true };
    if (o.sshKey) u.ssh_authorized_keys = [o.sshKey.trim()];
    doc.users = ['default', u];
  } else if (o.sshKey) doc.ssh_authorized_keys = [o.sshKey.trim()]; // the image's default user
  if (agent) {
    doc.write_files = [
      { path: '/usr/local/sbin/cloudlet-agent', permissions: '0755', owner: 'root:root', encoding: 'b64', content: fs.readFileSync(agentScriptPath()).toString('base64') },
      { path: '/etc/systemd/system/cloudlet-agent.service', permissions: '0644', owner: 'root:root', content: fs.readFileSync(path.join(guestSourceDir(), 'cloudlet-agent.service'), 'utf8') },
    ];
    doc.runcmd = [['systemctl', 'enable', '--now', 'cloudlet-agent.service']]; // enable reloads units itself
  }
  return `#cloud-config\n${stringify(doc)}`;
}

export function metaData(o: NoCloudOptions, instanceId: string): string {
  return stringify({ 'instance-id': instanceId, 'local-hostname': o.hostname });
}

/** The seed, served on 127.0.0.1 while a base is created; records what the guest fetched. */
export class NoCloudServer {
  private server?: http.Server;
  private port = 0;
  readonly fetched: string[] = [];
  private readonly files: Map<string, string>;

  constructor(readonly options: NoCloudOptions) {
    validateNoCloud(options);
    const instanceId = `cloudlet-${options.hostname}-${crypto.randomBytes(4).toString('hex')}`;
    this.files = new Map([
      ['/meta-data', metaData(options, instanceId)],
      ['/user-data', userData(options)],
      ['/vendor-data', ''],
    ]);
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const p = (req.url ?? '/').split('?')[0];
      const body = req.method === 'GET' ? this.files.get(p) : undefined;
      this.fetched.push(p);
      if (body === undefined) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  /** True once cloud-init fetched its user-data (it got the seed). */
  get seeded(): boolean { return this.fetched.includes('/user-data'); }

  /** The SMBIOS system serial number that points cloud-init at this server. */
  get smbiosSerial(): string {
    if (!this.port) throw new Error('NoCloudServer not started');
    return `ds=nocloud-net;s=http://${SLIRP_HOST}:${this.port}/`;
  }

  close(): void { this.server?.close(); this.server?.closeAllConnections(); }
}
