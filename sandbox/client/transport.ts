/**
 * Every HTTP(S) connection a client makes to a cloudlet, a Keystone or another cloudlet's service
 * goes through `transportFetch`: undici's fetch over one Agent per trust setting, built here only.
 *
 * Trust is the system store (Node's roots plus the operating system's CA bundle) or a CA file (PEM,
 * instead of the system store), and per host a pinned SHA-256 fingerprint of its certificate (that
 * certificate only, whoever signed it: a self-signed cloudlet trusted on first use). Pins are per
 * host because one login may reach several hosts (a fleet's Keystone and its cloudlets).
 * A certificate that fails becomes a `CertificateError` saying why, with the fingerprint of the
 * certificate the server presented, so a caller can show it and ask (trust on first use).
 * Pure JS (undici, node:tls): bundleable into the extension host.
 */
import * as fs from 'fs';
import type * as net from 'net';
import * as tls from 'tls';
import type { Agent, buildConnector, Dispatcher } from 'undici';
import { CloudletError } from '../common/errors';
import type { AddressPolicy } from '../common/addressPolicy';

// Loaded on first use, not at import: undici is most of the extension bundle's size, and the bundle's
// module wrappers run a module's body only when it is first required, so activation does not pay it.
let undiciModule: typeof import('undici') | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const undici = (): typeof import('undici') => (undiciModule ??= require('undici') as typeof import('undici'));

export interface TlsTrust {
  /** PEM text of the CA certificate(s) to trust instead of the system store (a --ca-file's content). */
  ca?: string;
  /** With `ca`: trust the system store as well (a daemon trusting public CAs, its peers' CA and itself). */
  alsoSystem?: boolean;
  /** Pinned certificates by host ("HOST:PORT", see hostKey): that host must present exactly this SHA-256 fingerprint. */
  pins?: Record<string, string>;
}

/** "HOST:PORT" of a URL (port 443 when https names none), the key of `TlsTrust.pins`. */
export function hostKey(url: string): string {
  const u = new URL(url);
  return hostPortKey(u.hostname, u.port || (u.protocol === 'http:' ? '80' : '443'));
}

function hostPortKey(hostname: string, port: string | number): string {
  return `${hostname.replace(/^\[|\]$/g, '').toLowerCase()}:${port}`;
}

/** `trust` with the certificate of `url`'s host pinned to `fingerprint`. */
export function withPin(trust: TlsTrust, url: string, fingerprint: string): TlsTrust {
  return { ...trust, pins: { ...trust.pins, [hostKey(url)]: normalizeFingerprint(fingerprint) } };
}

/** Why a server's certificate was refused. */
export type CertificateProblem = 'unknown-issuer' | 'expired' | 'not-yet-valid' | 'wrong-name' | 'changed' | 'invalid';

/** The certificate the server presented, as far as a person needs it to decide. */
export interface PresentedCertificate {
  fingerprint: string;   // SHA-256, "AB:CD:…"
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  names: string[];       // subject alternative names, e.g. ["IP Address:127.0.0.2", "DNS:localhost"]
}

/** A server certificate the client refused (error code Untrusted). */
export class CertificateError extends CloudletError {
  constructor(readonly problem: CertificateProblem, readonly host: string, readonly presented: PresentedCertificate | undefined, readonly pinned?: string, detail?: string) {
    super('Untrusted', certificateMessage(problem, host, presented, pinned, detail), { hint: certificateHint(problem) });
    this.name = 'CertificateError';
  }
}

/** Normalizes a SHA-256 fingerprint ("ab:cd…", "ABCD…", "sha256 Fingerprint=AB:…") to "AB:CD:…"; throws BadInput if it is none. */
export function normalizeFingerprint(text: string): string {
  const hex = text.trim().replace(/^(sha-?256)\s*(fingerprint)?\s*[=:]?\s*/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new CloudletError('BadInput', `not a SHA-256 certificate fingerprint (64 hex digits): ${text.slice(0, 120)}`);
  return hex.toUpperCase().match(/../g)!.join(':');
}

/** Reads a CA file for `TlsTrust.ca`, with a clear error when it is missing or holds no certificate. */
export function readCaFile(file: string): string {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new CloudletError('BadInput', `cannot read the CA file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(text)) throw new CloudletError('BadInput', `${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return text;
}

let systemStore: string[] | undefined;

/**
 * The system store: Node's own roots, NODE_EXTRA_CA_CERTS, and the operating system's bundle
 * (Node ≥ 22.15 reads it itself; before, the usual bundle files of Debian, Fedora and Alpine).
 */
export function systemCertificates(): string[] {
  if (systemStore) return systemStore;
  const getCA = (tls as unknown as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
  if (typeof getCA === 'function') {
    systemStore = [...new Set([...getCA('default'), ...safe(() => getCA('system'), [])])];
    return systemStore;
  }
  const out = [...tls.rootCertificates];
  const bundle = [process.env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem']
    .find((f) => !!f && safe(() => fs.statSync(f).isFile(), false));
  if (bundle) out.push(safe(() => fs.readFileSync(bundle, 'utf8'), ''));
  if (process.env.NODE_EXTRA_CA_CERTS) out.push(safe(() => fs.readFileSync(process.env.NODE_EXTRA_CA_CERTS!, 'utf8'), ''));
  systemStore = out.filter(Boolean);
  return systemStore;
}

const agents = new Map<string, Agent>();

const guardedAgents = new WeakMap<AddressPolicy, Map<string, Agent>>();

/**
 * The undici dispatcher for a trust setting (one per setting, kept: connections are reused), and,
 * for URLs a caller chose (overlay_url), the address ranges its connections may reach.
 */
export function dispatcherFor(trust: TlsTrust = {}, addresses?: AddressPolicy): Dispatcher {
  const pins = new Map(Object.entries(trust.pins ?? {}).map(([host, fp]) => {
    const [h, p] = [host.slice(0, host.lastIndexOf(':')), host.slice(host.lastIndexOf(':') + 1)];
    return [hostPortKey(h, p), normalizeFingerprint(fp)];
  }));
  const key = JSON.stringify([trust.ca ?? '', !!trust.alsoSystem, [...pins].sort()]);
  let cache = agents;
  if (addresses) {
    cache = guardedAgents.get(addresses) ?? new Map();
    guardedAgents.set(addresses, cache);
  }
  let agent = cache.get(key);
  if (!agent) {
    const ca = trust.ca ? (trust.alsoSystem ? [...systemCertificates(), trust.ca] : [trust.ca]) : systemCertificates();
    agent = new (undici().Agent)({ connect: verifyingConnector(ca, pins, addresses) });
    cache.set(key, agent);
  }
  return agent;
}

/**
 * Node verifies the chain and the name (rejectUnauthorized off, so the verdict and the certificate
 * reach us instead of a bare error); this connector then accepts or refuses the socket.
 */
function verifyingConnector(ca: string[], pins: Map<string, string>, addresses?: AddressPolicy): buildConnector.connector {
  // No TLS session resumption with pins: every connection shows its certificate afresh.
  const connect = undici().buildConnector({ ca, rejectUnauthorized: false, ...(pins.size ? { maxCachedSessions: 0 } : {}),
    ...(addresses ? { lookup: addresses.lookup } : {}) } as buildConnector.BuildOptions);
  const verifying: buildConnector.connector = (opts, callback) => connect(opts, (err, socket) => {
    if (err || !socket) { callback(err ?? new Error('no socket'), null); return; }
    if (opts.protocol !== 'https:') { callback(null, socket as net.Socket); return; }
    const s = socket as tls.TLSSocket;
    const peer = s.getPeerCertificate();
    const presented = peer && peer.fingerprint256 ? describePeer(peer) : undefined;
    const host = `${opts.hostname}${opts.port ? `:${opts.port}` : ''}`;
    const pin = pins.get(hostPortKey(opts.hostname, opts.port || '443'));
    let refusal: CertificateError | undefined;
    if (pin) {
      if (presented?.fingerprint !== pin) refusal = new CertificateError('changed', host, presented, pin);
    } else if (!s.authorized) {
      refusal = new CertificateError(problemOf(String(s.authorizationError)), host, presented, undefined, String(s.authorizationError));
    }
    if (refusal) { s.destroy(); callback(refusal, null); return; }
    callback(null, socket as net.Socket);
  });
  return addresses ? addresses.guard(verifying) : verifying;
}

function problemOf(code: string): CertificateProblem {
  if (/EXPIRED/.test(code)) return 'expired';
  if (/NOT_YET_VALID/.test(code)) return 'not-yet-valid';
  if (/ALTNAME|HOSTNAME|IP_ADDRESS/.test(code) || /does not match certificate/.test(code)) return 'wrong-name';
  if (/SELF_SIGNED|ISSUER|LEAF_SIGNATURE|UNTRUSTED|CERT_SIGNATURE|INVALID_CA/.test(code)) return 'unknown-issuer';
  return 'invalid';
}

function describePeer(p: tls.PeerCertificate): PresentedCertificate {
  const name = (x: tls.Certificate | undefined) => (x ? Object.entries(x).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(', ') : '');
  return {
    fingerprint: p.fingerprint256, subject: name(p.subject), issuer: name(p.issuer), validFrom: p.valid_from, validTo: p.valid_to,
    names: (p.subjectaltname ?? '').split(', ').filter(Boolean),
  };
}

function certificateMessage(problem: CertificateProblem, host: string, c: PresentedCertificate | undefined, pinned?: string, detail?: string): string {
  const fp = c ? ` (SHA-256 fingerprint ${c.fingerprint})` : '';
  switch (problem) {
    case 'changed':
      return `the TLS certificate of ${host} has CHANGED since it was trusted: pinned ${pinned}, presented ${c?.fingerprint ?? 'none'}. `
        + 'Refusing to connect: someone may be intercepting the connection, or the cloudlet has a new certificate.';
    case 'unknown-issuer': return `the TLS certificate of ${host} is not signed by a CA this client trusts${fp}`;
    case 'expired': return `the TLS certificate of ${host} expired on ${c?.validTo ?? '?'}${fp}`;
    case 'not-yet-valid': return `the TLS certificate of ${host} is not valid before ${c?.validFrom ?? '?'}${fp}`;
    case 'wrong-name': return `the TLS certificate of ${host} is for other names (${c?.names.join(', ') || c?.subject || '?'})${fp}`;
    default: return `the TLS certificate of ${host} was refused (${detail ?? 'invalid'})${fp}`;
  }
}

function certificateHint(problem: CertificateProblem): string {
  switch (problem) {
    case 'changed': return 'check the fingerprint with the cloudlet\'s operator (`cloudlet serve` prints it); trust the new one only if it is theirs';
    case 'unknown-issuer': return 'trust its CA (a CA file) or, for a self-signed cloudlet, pin this fingerprint after comparing it with the one `cloudlet serve` printed';
    case 'expired': case 'not-yet-valid': return 'the cloudlet needs a current certificate (or this machine\'s clock is wrong)';
    case 'wrong-name': return 'use a URL with a name the certificate is for, or give the cloudlet a certificate for this name';
    default: return 'the cloudlet\'s TLS set-up needs fixing';
  }
}

type FetchInit = RequestInit & { duplex?: 'half' };

/**
 * fetch with this trust. Errors: a refused certificate throws its CertificateError; anything else
 * is fetch's own TypeError (its `cause` says what failed), for the caller to word.
 */
export async function transportFetch(url: string, init: FetchInit = {}, trust?: TlsTrust, addresses?: AddressPolicy): Promise<Response> {
  try {
    const { fetch } = undici();
    return await fetch(url, { ...(init as object), dispatcher: dispatcherFor(trust, addresses) } as Parameters<typeof fetch>[1]) as unknown as Response;
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof CertificateError) throw cause;
    throw e;
  }
}

/** What a failed fetch's error says, in one short phrase (the cause's code or message). */
export function fetchFailure(e: unknown, url?: string): string {
  if ((e as Error).name === 'TimeoutError') return 'timed out';
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const what = cause?.message ?? (e as Error).message;
  // A plain-HTTP request to an HTTPS port gets its connection closed without an answer.
  if (url?.startsWith('http:') && (cause?.code === 'UND_ERR_SOCKET' || cause?.code === 'ECONNRESET')) {
    return `${what} (does it speak HTTPS? try https://)`;
  }
  if (url?.startsWith('https:') && /wrong version number|EPROTO|packet length too long/i.test(`${cause?.code} ${what}`)) {
    return `${what} (it does not speak TLS: is it a plain-HTTP address?)`;
  }
  return cause?.code && !what.includes(cause.code) ? `${what} (${cause.code})` : what;
}

function safe<T>(f: () => T, fallback: T): T { try { return f(); } catch { return fallback; } }
