/**
 * The daemon's listening edge, checked before anything listens or any state is touched:
 *  - TLS: `--tls-cert/--tls-key` (readable, parseable, the key belongs to the certificate, valid now),
 *    or `--tls-self-signed` (a key and certificate made once and kept in <data>/tls/);
 *  - plain HTTP only on loopback addresses unless `--insecure-http` (then a warning);
 *  - the data folder belongs to the user running the daemon;
 *  - every address and port can be bound.
 * Also the daemon's trust for its own outgoing calls to other cloudlets (handoff destinations,
 * overlay_url): the system store, `--peer-ca` files, and its own certificate.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import type { Logger } from '../common/log';
import { readCaFile, type TlsTrust } from '../client/transport';
import { makeCertificate } from './certificate';

export interface ListenOptions {
  /** PEM files of the certificate (chain) and its private key. */
  tlsCert?: string;
  tlsKey?: string;
  /** Make (once) and use a self-signed certificate kept in <data>/tls/. */
  tlsSelfSigned?: boolean;
  /** Plain HTTP on a non-loopback address (tokens and passwords in the clear): only when asked. */
  insecureHttp?: boolean;
  /** CA files (PEM) trusted for calls to other cloudlets, besides the system store. */
  peerCa?: string[];
}

export interface PreparedListen {
  scheme: 'http' | 'https';
  /** For https.createServer / Fastify's `https` option. */
  tls?: { cert: string; key: string };
  /** SHA-256 fingerprint of the served certificate ("AB:CD:…"). */
  fingerprint?: string;
  certFile?: string;
  /** How this daemon verifies other cloudlets it calls. */
  peerTrust: TlsTrust;
}

/** Self-signed certificates are pinned by fingerprint, so a long life only spares re-pinning. */
const SELF_SIGNED_DAYS = 3650;

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/** Every check of the listening edge; throws a clear CloudletError before anything listens. */
export async function prepareListen(o: ListenOptions & { hosts: { host: string; port: number }[]; dataDir: string; publicUrl?: string; log: Logger }): Promise<PreparedListen> {
  if ((o.tlsCert && !o.tlsKey) || (!o.tlsCert && o.tlsKey)) throw new CloudletError('BadInput', '--tls-cert and --tls-key go together');
  if (o.tlsSelfSigned && o.tlsCert) throw new CloudletError('BadInput', '--tls-self-signed makes its own certificate: give it or --tls-cert/--tls-key, not both');
  const wantsTls = !!(o.tlsCert || o.tlsSelfSigned);
  if (wantsTls && o.insecureHttp) throw new CloudletError('BadInput', '--insecure-http is for a daemon without TLS; drop it or the --tls-* options');

  checkDataDirOwner(o.dataDir);
  const peerCas = (o.peerCa ?? []).map((f) => readCaFile(f));

  if (!wantsTls) {
    const exposed = o.hosts.filter((h) => !isLoopback(h.host)).map((h) => h.host);
    if (exposed.length && !o.insecureHttp) {
      throw new CloudletError('BadInput', `refusing plain HTTP on ${exposed.join(', ')}: off loopback, passwords and tokens would cross the network in the clear`,
        { hint: 'give --tls-self-signed (or --tls-cert FILE --tls-key FILE); --insecure-http only on a network you trust' });
    }
    if (exposed.length) o.log.warn(`--insecure-http: plain HTTP on ${exposed.join(', ')}; passwords, tokens and overlays cross the network in the clear`);
    if (o.publicUrl?.startsWith('https:')) throw new CloudletError('BadInput', `--public-url ${o.publicUrl} says https, but this daemon has no TLS certificate`);
    await checkBindable(o.hosts);
    return { scheme: 'http', peerTrust: peerCas.length ? { ca: peerCas.join('\n'), alsoSystem: true } : {} };
  }

  const material = o.tlsSelfSigned ? await selfSigned(o.dataDir, o.hosts.map((h) => h.host), o.publicUrl, o.log) : loadTls(o.tlsCert!, o.tlsKey!);
  if (o.publicUrl?.startsWith('http:')) throw new CloudletError('BadInput', `--public-url ${o.publicUrl} says http, but this daemon speaks HTTPS`);
  warnUncoveredNames(material.x509, [...o.hosts.map((h) => h.host), ...(o.publicUrl ? [new URL(o.publicUrl).hostname] : [])], material.certFile, o.log);
  await checkBindable(o.hosts);
  return {
    scheme: 'https', tls: { cert: material.cert, key: material.key }, fingerprint: material.x509.fingerprint256, certFile: material.certFile,
    // Its own certificate too: a synthesis may fetch an overlay from this daemon's own image service.
    peerTrust: { ca: [...peerCas, material.cert].join('\n'), alsoSystem: true },
  };
}

interface TlsMaterial { cert: string; key: string; x509: crypto.X509Certificate; certFile: string }

/** Reads and checks a certificate and its key: readable, PEM, matching, valid now. */
export function loadTls(certFile: string, keyFile: string): TlsMaterial {
  const cert = readPem(certFile, 'TLS certificate');
  const key = readPem(keyFile, 'TLS key');
  let x509: crypto.X509Certificate;
  try { x509 = new crypto.X509Certificate(cert); } catch (e) {
    throw new CloudletError('BadInput', `${certFile} is not a PEM certificate: ${(e as Error).message}`);
  }
  let privateKey: crypto.KeyObject;
  try { privateKey = crypto.createPrivateKey(key); } catch (e) {
    const msg = (e as Error).message;
    throw new CloudletError('BadInput', /passphrase|encrypted/i.test(msg) ? `${keyFile} is an encrypted key; give the daemon an unencrypted one (mode 0600)` : `${keyFile} is not a PEM private key: ${msg}`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CloudletError('BadInput', `the key ${keyFile} does not belong to the certificate ${certFile} (SHA-256 ${x509.fingerprint256})`);
  }
  const now = Date.now();
  if (Date.parse(x509.validTo) < now) throw new CloudletError('BadInput', `the certificate ${certFile} expired on ${x509.validTo}`, { hint: 'renew it; clients refuse an expired certificate' });
  if (Date.parse(x509.validFrom) > now) throw new CloudletError('BadInput', `the certificate ${certFile} is not valid before ${x509.validFrom}`, { hint: 'is this machine\'s clock right?' });
  return { cert, key, x509, certFile };
}

function readPem(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' ? `permission denied for user ${os.userInfo().username}` : code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message;
    throw new CloudletError('BadInput', `cannot read the ${what} ${file}: ${why}`);
  }
}

/** <data>/tls/{cert,key}.pem: made on first use for the names this daemon is reached by, then kept. */
async function selfSigned(dataDir: string, hosts: string[], publicUrl: string | undefined, log: Logger): Promise<TlsMaterial> {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (fs.existsSync(certFile) || fs.existsSync(keyFile)) {
    try {
      return loadTls(certFile, keyFile);
    } catch (e) {
      const m = (e as Error).message;
      throw new CloudletError('BadInput', `the self-signed certificate in ${dir} cannot be used: ${m}`,
        { hint: `remove ${dir} to make a new one (clients that pinned the old fingerprint will refuse the new one until they trust it)` });
    }
  }
  const names = certificateNames(hosts, publicUrl);
  const made = await makeCertificate({
    commonName: names.dns[0] ?? names.ips[0] ?? 'cloudlet', dnsNames: names.dns, ipAddresses: names.ips,
    notAfter: new Date(Date.now() + SELF_SIGNED_DAYS * 86_400_000),
  });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Written aside and renamed: a crash never leaves a key without its certificate.
  fs.writeFileSync(`${keyFile}.tmp`, made.keyPem, { mode: 0o600 });
  fs.writeFileSync(`${certFile}.tmp`, made.certPem, { mode: 0o644 });
  fs.renameSync(`${keyFile}.tmp`, keyFile);
  fs.renameSync(`${certFile}.tmp`, certFile);
  log.info(`made a self-signed TLS certificate ${certFile} for ${[...names.dns, ...names.ips].join(', ')}`);
  return loadTls(certFile, keyFile);
}

/** The names a self-signed certificate covers: the listen and public hosts, loopback, the host name, and every address for a wildcard listen. */
export function certificateNames(hosts: string[], publicUrl?: string): { dns: string[]; ips: string[] } {
  const dns = new Set<string>();
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const add = (h: string) => {
    const bare = h.replace(/^\[|\]$/g, '');
    if (net.isIP(bare)) ips.add(bare); else if (bare) dns.add(bare.toLowerCase());
  };
  if (publicUrl) add(new URL(publicUrl).hostname);
  for (const h of hosts) {
    if (h === '0.0.0.0' || h === '::') {
      for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (!a.address.startsWith('fe80:')) ips.add(a.address);
    } else add(h);
  }
  add(os.hostname());
  dns.add('localhost');
  return { dns: [...dns], ips: [...ips] };
}

function warnUncoveredNames(x509: crypto.X509Certificate, hosts: string[], certFile: string, log: Logger): void {
  for (const raw of hosts) {
    const h = raw.replace(/^\[|\]$/g, '');
    if (h === '0.0.0.0' || h === '::') continue;
    const ok = net.isIP(h) ? x509.checkIP(h) : x509.checkHost(h);
    if (!ok) log.warn(`the certificate ${certFile} is not for ${h}: clients reaching this daemon as ${h} will refuse it unless they pin its fingerprint`);
  }
}

/** The data folder must belong to the user running the daemon: its files would otherwise be half one user's, half another's. */
export function checkDataDirOwner(dataDir: string): void {
  let st: fs.Stats;
  try { st = fs.statSync(dataDir); } catch { return; }  // made by the daemon, as this user
  if (!st.isDirectory()) throw new CloudletError('BadInput', `the data folder ${dataDir} is not a folder`);
  const uid = process.geteuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new CloudletError('BadInput', `the data folder ${dataDir} belongs to ${userName(st.uid)}, not to ${userName(uid)} who runs this daemon`,
      { hint: `run the daemon as ${userName(st.uid)}, or give it a folder of its own (--data)` });
  }
}

function userName(uid: number): string {
  try {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
    if (line) return `user ${line.split(':')[0]} (uid ${uid})`;
  } catch { /* no passwd file */ }
  return `uid ${uid}`;
}

/** Binds and releases each address: a port in use or an address not of this machine is a clear error before any state is touched. */
export async function checkBindable(hosts: { host: string; port: number }[]): Promise<void> {
  for (const { host, port } of hosts) {
    if (port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', (e: NodeJS.ErrnoException) => reject(listenError(e, host, port)));
      s.listen({ host, port, exclusive: true }, () => s.close(() => resolve()));
    });
  }
}

export function listenError(e: NodeJS.ErrnoException, host: string, port: number): CloudletError {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (e.code) {
    case 'EADDRINUSE': return new CloudletError('Conflict', `${where} is already in use (another cloudlet daemon, or another program)`, { hint: 'stop it, or give --listen another port' });
    case 'EACCES': return new CloudletError('Forbidden', `not allowed to listen on ${where}`, { hint: port < 1024 ? 'ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port from 1024 up' : undefined });
    case 'EADDRNOTAVAIL': return new CloudletError('BadInput', `${host} is not an address of this machine`);
    case 'ENOTFOUND': case 'EAI_AGAIN': return new CloudletError('BadInput', `cannot resolve the listen address ${host}`);
    default: return new CloudletError('Unavailable', `cannot listen on ${where}: ${e.message}`);
  }
}
