/**
 * Fetching an overlay named by `metadata.overlay_url`: the manifest first (two small Range reads,
 * so a wrong base or an oversize overlay is refused before the server is even created), then the
 * whole container into a temp file, capped, renamed into place only when complete.
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import { HEAD_READ_BYTES, manifestFromHead } from '../overlay/manifestHead';
import { CertificateError, fetchFailure, transportFetch, withPin, type TlsTrust } from '../client/transport';
import type { OverlayManifest } from '../overlay/format';

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

async function get(url: string, headers: Record<string, string>, range?: [number, number], signal?: AbortSignal, trust?: TlsTrust): Promise<Response> {
  let res: Response;
  try {
    res = await transportFetch(url, { headers: { ...headers, ...(range ? { range: `bytes=${range[0]}-${range[1]}` } : {}) }, signal, redirect: 'follow' }, trust);
  } catch (e) {
    if (e instanceof CertificateError) throw new CloudletError('Untrusted', `overlay_url ${url}: ${e.message}`, { hint: e.hint });
    throw new CloudletError('BadInput', `overlay_url ${url} cannot be fetched: ${fetchFailure(e, url)}`);
  }
  if (res.status >= 400) {
    await res.body?.cancel();
    throw new CloudletError('BadInput', `overlay_url ${url} answered ${res.status} ${res.statusText}`);
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
export async function fetchOverlayManifest(url: string, headers: Record<string, string>, maxBytes: number, signal?: AbortSignal, trust?: TlsTrust): Promise<{ manifest: OverlayManifest; overlayId: string; size?: number }> {
  const first = await get(url, headers, [0, HEAD_READ_BYTES - 1], signal, trust);
  const size = totalSize(first);
  if (size !== undefined && size > maxBytes) {
    await first.body?.cancel();
    throw new CloudletError('BadInput', `overlay at ${url} is ${size} bytes, over this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
  }
  const head = Buffer.from(await readAtMost(first, HEAD_READ_BYTES));
  const parsed = await manifestFromHead(head, async (start, end) => {
    const rest = await get(url, headers, [start, end], signal, trust);
    if (rest.status !== 206) {
      await rest.body?.cancel();
      throw new CloudletError('BadInput', `overlay server at ${url} ignores Range requests; the manifest needs ${end + 1} bytes`);
    }
    // Only the bytes asked for, whatever the server sends.
    return Buffer.from(await readAtMost(rest, end - start + 1));
  }, { where: url, maxBytes });
  return { ...parsed, size };
}

async function readAtMost(res: Response, n: number): Promise<Uint8Array> {
  const reader = res.body!.getReader();
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
    got += r.value.length;
  }
  await reader.cancel().catch(() => {});
  return Buffer.concat(parts).subarray(0, n);
}

/** Downloads the whole overlay into `dest` (via dest.partial), at most `maxBytes`. */
export async function downloadOverlay(url: string, headers: Record<string, string>, dest: string, maxBytes: number,
  onBytes: (done: number, total?: number) => void, signal?: AbortSignal, trust?: TlsTrust): Promise<number> {
  const res = await get(url, headers, undefined, signal, trust);
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
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(partial, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(partial, dest);
  return done;
}
