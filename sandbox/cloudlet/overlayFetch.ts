/**
 * Fetching an overlay named by `metadata.overlay_url`: the manifest first (two small Range reads,
 * so a wrong base or an oversize overlay is refused before the server is even created), then the
 * whole container into a temp file, capped, renamed into place only when complete.
 *
 * The URL is the caller's, the connection the daemon's: every connection (redirects too) goes only
 * to the address ranges of the daemon's `overlay_url_networks`, and until the answer proves to be
 * an overlay (its container header) every failure reads the same, so a member cannot map what
 * answers where (no "answered 404" against "cannot be fetched"); the daemon log has the reason.
 */
import * as fs from 'fs';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { AddressPolicy, DEFAULT_OVERLAY_NETWORKS, isAddressRefusal } from '../common/addressPolicy';
import { CertificateError, fetchFailure, transportFetch, withPin, type TlsTrust } from '../client/transport';
import type { Logger } from '../common/log';
import { HEAD_READ_BYTES, manifestFromHead } from '../overlay/manifestHead';
import { CONTAINER_HEADER_SIZE, decodeContainerHeader, type OverlayManifest } from '../overlay/format';
import { readAtMost } from '../common/readAtMost';

export function checkOverlayUrl(raw: unknown): URL {
  if (typeof raw !== 'string' || !raw) throw new CloudletError('BadInput', 'metadata.overlay_url must be a URL string');
  let u: URL;
  try { u = new URL(raw); } catch { throw new CloudletError('BadInput', `metadata.overlay_url is not a URL: ${raw}`); }
  const scheme = u.protocol.replace(/:$/, '');
  if (!['http', 'https', 'oci'].includes(scheme)) {
    throw new CloudletError('BadInput', `overlay_url scheme "${scheme}" is not supported: use http, https or oci`);
  }
  return u;
}

/**
 * How to verify an https overlay_url: the certificate pinned by metadata.overlay_tls_fingerprint
 * (a self-signed cloudlet the caller trusts), else the daemon's own trust for its peers.
 */
export function overlayUrlTrust(url: string, metadata: Record<string, unknown>, peerTrust: TlsTrust): TlsTrust {
  const fp = metadata.overlay_tls_fingerprint;
  if (fp === undefined) return peerTrust;
  if (typeof fp !== 'string') throw new CloudletError('BadInput', 'metadata.overlay_tls_fingerprint must be a SHA-256 fingerprint string');
  return withPin(peerTrust, url, fp);
}

/** How an overlay_url is fetched: TLS trust, where it may lead, and where the reasons of refusals go. */
export interface OverlayFetchOptions {
  trust?: TlsTrust;
  policy?: AddressPolicy;
  log?: Logger;
}

let defaultPolicy: AddressPolicy | undefined;
/** Public addresses and loopback: what a daemon without an overlay_url_networks setting allows. */
export function defaultOverlayPolicy(): AddressPolicy {
  return defaultPolicy ??= new AddressPolicy(DEFAULT_OVERLAY_NETWORKS);
}

/** The one answer for "nothing that is an overlay answered there", whatever the reason was. */
export function unreadable(url: string, reason: string, o: OverlayFetchOptions): CloudletError {
  o.log?.warn(`overlay_url ${url}: ${reason}`);
  return new CloudletError('BadInput', `overlay_url ${url}: no cloudlet overlay could be read there`, {
    hint: 'check that the URL serves the overlay file to this cloudlet (the cloudlet\'s log says why it could not)',
  });
}

/** The refusal of an address outside overlay_url_networks (what the name resolves to is no secret). */
export function outsideRanges(url: string): CloudletError {
  return new CloudletError('BadInput', `overlay_url ${url} leads to an address this cloudlet may not fetch from`, {
    hint: 'the cloudlet\'s overlay_url_networks setting lists the address ranges overlay URLs may reach',
  });
}

async function get(url: string, headers: Record<string, string>, o: OverlayFetchOptions, range?: [number, number], signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await transportFetch(url, { headers: { ...headers, ...(range ? { range: `bytes=${range[0]}-${range[1]}` } : {}) }, signal, redirect: 'follow' },
      o.trust, o.policy ?? defaultOverlayPolicy());
  } catch (e) {
    throwIfCancelled(signal);
    if (isAddressRefusal(e)) throw outsideRanges(url);
    // The certificate is told (a caller pins a self-signed cloudlet's by it).
    if (e instanceof CertificateError) throw new CloudletError('Untrusted', `overlay_url ${url}: ${e.message}`, { hint: e.hint });
    throw unreadable(url, `cannot be fetched: ${fetchFailure(e, url)}`, o);
  }
  if (res.status >= 400) {
    await res.body?.cancel();
    throw unreadable(url, `answered ${res.status} ${res.statusText}`, o);
  }
  return res;
}

/** Total size from Content-Range ("bytes a-b/N") or Content-Length. */
function totalSize(res: Response): number | undefined {
  const cr = res.headers.get('content-range');
  const m = cr && /\/(\d+)$/.exec(cr);
  if (m) return Number(m[1]);
  const cl = res.headers.get('content-length');
  return res.status === 200 && cl ? Number(cl) : undefined;
}

/** Reads the manifest of a remote overlay; checks the size cap on the way. */
export async function fetchOverlayManifest(url: string, headers: Record<string, string>, maxBytes: number, signal?: AbortSignal,
  o: OverlayFetchOptions = {}): Promise<{ manifest: OverlayManifest; overlayId: string; size?: number }> {
  const first = await get(url, headers, o, [0, HEAD_READ_BYTES - 1], signal);
  const size = totalSize(first);
  const head = await readAtMost(first, HEAD_READ_BYTES);
  // Nothing about the answer is told before it proves to be an overlay.
  try {
    if (head.length < CONTAINER_HEADER_SIZE) throw new Error(`${head.length} bytes, shorter than an overlay header`);
    decodeContainerHeader(head.subarray(0, CONTAINER_HEADER_SIZE));
  } catch (e) {
    throw unreadable(url, `is no overlay: ${(e as Error).message}`, o);
  }
  if (size !== undefined && size > maxBytes) {
    throw new CloudletError('BadInput', `overlay at ${url} is ${size} bytes, over this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
  }
  const parsed = await manifestFromHead(head, async (start, end) => {
    const rest = await get(url, headers, o, [start, end], signal);
    if (rest.status !== 206) {
      await rest.body?.cancel();
      throw new CloudletError('BadInput', `overlay server at ${url} ignores Range requests; the manifest needs ${end + 1} bytes`);
    }
    // Only the bytes asked for, whatever the server sends.
    return readAtMost(rest, end - start + 1);
  }, { where: url, maxBytes });
  return { ...parsed, size };
}


/** Downloads the whole overlay into `dest` (via dest.partial), at most `maxBytes`. */
export async function downloadOverlay(url: string, headers: Record<string, string>, dest: string, maxBytes: number,
  onBytes: (done: number, total?: number) => void, signal?: AbortSignal, o: OverlayFetchOptions = {}): Promise<number> {
  const res = await get(url, headers, o, undefined, signal);
  const total = totalSize(res);
  if (total !== undefined && total > maxBytes) {
    await res.body?.cancel();
    throw new CloudletError('BadInput', `overlay at ${url} is ${total} bytes, over this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
  }
  const partial = `${dest}.partial`;
  const fd = fs.openSync(partial, 'w');
  let done = 0;
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      done += r.value.length;
      if (done > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new CloudletError('BadInput', `overlay at ${url} sent more than this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
      }
      fs.writeSync(fd, r.value);
      onBytes(done, total);
    }
    // No fsync: the file lives only for the synthesis that reads it next (through the page cache) and
    // is removed after it; a host crash ends that job anyway.
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(partial, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(partial, dest);
  return done;
}
