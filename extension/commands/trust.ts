/**
 * Trust on first use for HTTPS cloudlets whose certificate no trusted CA signed (a daemon started
 * with --tls-self-signed): the editor shows the certificate's SHA-256 fingerprint and asks once;
 * the answer is pinned per host in the cloudlet's settings entry. From then on sandbox/client
 * accepts that certificate only, and a changed one is refused (a modal error, never a question).
 */
import * as vscode from 'vscode';
import type { Cloudlets } from '../cloudlets';
import type { Output } from '../output';

/** What sandbox/client's CertificateError carries (read structurally: code Untrusted). */
export interface Refusal {
  problem: string;
  host: string;
  presented?: { fingerprint: string; subject: string; issuer: string; validFrom: string; validTo: string; names: string[] };
  pinned?: string;
}

export function refusalOf(e: unknown): Refusal | undefined {
  const x = e as Partial<Refusal> & { code?: unknown };
  if (!x || typeof x !== 'object' || x.code !== 'Untrusted' || typeof x.host !== 'string' || typeof x.problem !== 'string') return undefined;
  return { problem: x.problem, host: x.host, presented: x.presented, pinned: x.pinned };
}

/** The "HOST:PORT" key of a pin (sandbox/client's hostKey); a host without a port is on 443. */
export function pinKey(host: string): string {
  const h = host.toLowerCase();
  return /:\d+$/.test(h) ? h : `${h}:443`;
}

/** Can the user be asked? Only for an unknown issuer with a certificate to show (never for a changed one). */
export function askable(r: Refusal | undefined): r is Refusal & { presented: NonNullable<Refusal['presented']> } {
  return !!r && r.problem === 'unknown-issuer' && !!r.presented?.fingerprint;
}

/** Shows the certificate and asks once. True when the user trusts it. */
export async function askToTrust(r: Refusal & { presented: NonNullable<Refusal['presented']> }, forWhat: string): Promise<boolean> {
  const c = r.presented;
  const detail = [
    `SHA-256 fingerprint:\n${c.fingerprint}`,
    `Issued to: ${c.subject || '?'}${c.names.length ? ` (${c.names.join(', ')})` : ''}\nIssued by: ${c.issuer || '?'}\nValid: ${c.validFrom} to ${c.validTo}`,
    'Compare the fingerprint with the one "cloudlet serve" (or "cloudlet service status") printed on that host. '
      + `Trust it only if they match: it is then pinned for ${forWhat}, and a different certificate later is refused.`,
  ].join('\n\n');
  const choice = await vscode.window.showWarningMessage(`The HTTPS certificate of ${r.host} is not signed by a CA this editor trusts.`, { modal: true, detail }, 'Trust This Certificate');
  return choice === 'Trust This Certificate';
}

/** The modal a changed certificate gets: loud, with both fingerprints, and nothing to click through. */
export async function sayChanged(r: Refusal, forWhat: string): Promise<void> {
  await vscode.window.showErrorMessage(`REFUSED: the HTTPS certificate of ${r.host} (${forWhat}) has CHANGED since you trusted it.`, {
    modal: true,
    detail: `Pinned: ${r.pinned ?? '?'}\nPresented now: ${r.presented?.fingerprint ?? 'none'}\n\nSomeone may be intercepting the connection, or the cloudlet got a new certificate. `
      + 'Ask its operator. If the new certificate is theirs, remove the cloudlet and add it again to trust the new one.',
  });
}

/**
 * Runs `attempt` (a login or a call) for cloudlet `name`; each unknown certificate on the way (the
 * cloudlet's, a fleet Keystone's) is shown and, when the user trusts it, pinned and tried again.
 * Takes the two references it needs, not Ext: ext.ts imports this file (no import cycle).
 */
export async function withTrust<T>(ext: { cloudlets: Cloudlets; output: Output }, name: string, attempt: () => Promise<T>): Promise<T> {
  for (let round = 0; ; round++) {
    try {
      return await attempt();
    } catch (e) {
      const r = refusalOf(e);
      if (r?.problem === 'changed') await sayChanged(r, name);
      if (round >= 3 || !askable(r) || !(await askToTrust(r, name))) throw e;
      await ext.cloudlets.pin(name, pinKey(r.host), r.presented.fingerprint);
      ext.output.info(`${name}: pinned the certificate of ${r.host} (SHA-256 ${r.presented.fingerprint})`);
    }
  }
}
