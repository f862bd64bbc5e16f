/**
 * Where a synthesis gets its overlay, opened while the create request is answered (so a missing
 * base or an overlay over the size cap is a 400 before any server exists), prepared in the job:
 *   http(s): the manifest is read first, the whole file downloaded into tmp in the job;
 *   oci:     openOverlayFromOci (sandbox/registry): manifest and sizes from the registry, segments
 *            fetched in parallel and verified by synthesis itself (no temp file), cached by digest.
 *   this daemon's own image service (an uploaded overlay, or one it made): read where the image
 *            store keeps it (openStoredOverlay), not downloaded from itself over HTTP.
 */
import * as fs from 'fs';
import type { OverlayManifest } from '../overlay/format';
import type { SegmentSource } from '../overlay/overlayReader';
import type { ParentLookup } from '../overlay/parentChain';
import { blobCacheDirFor, openOverlayChainFromOci, plainHttpSetting, readCaFile } from '../registry';
import { CloudletError, describeError, isCloudletError } from '../common/errors';
import type { Credentials } from '../registry/credentials';
import { defaultOverlayPolicy, downloadOverlay, fetchOverlayManifest, outsideRanges, unreadable, type OverlayFetchOptions } from './overlayFetch';
import { isAddressRefusal } from '../common/addressPolicy';
import { onDiskFullAsync } from '../common/hostErrors';
import { OverlayReader } from '../overlay/overlayReader';
import { isImageId } from './imageStore';

/** What backend.synthesize takes: an overlay file, or a manifest with a segment source. */
export type SynthesisInput = string | { manifest: OverlayManifest; overlayId: string; source: SegmentSource; parentLookup?: ParentLookup; keep?: (file: string) => Promise<void> };

export interface OverlaySource {
  overlayId: string;
  baseId: string;
  prepare(tmpFile: string, progress: (done: number, total?: number) => void, signal: AbortSignal): Promise<SynthesisInput>;
  close(): Promise<void>;
}

/** `o.trust`: how to verify an https URL's certificate; `o.policy`: the address ranges it may lead to (default: public and loopback). */
export async function openHttpOverlay(url: string, headers: Record<string, string>, maxBytes: number, o: OverlayFetchOptions = {}): Promise<OverlaySource> {
  const { manifest, overlayId } = await fetchOverlayManifest(url, headers, maxBytes, undefined, o);
  // Its parents would have to come from somewhere this caller may read: the daemon does not look them up in
  // its own store (any project could then reach another's overlays by ID) nor in Glance; a registry keeps a chain.
  if (manifest.parent) throw childRefusal(url, manifest);
  return {
    overlayId, baseId: manifest.baseId,
    async prepare(tmp, progress, signal) {
      await onDiskFullAsync(tmp, 'synthesis: downloading the overlay', downloadOverlay(url, headers, tmp, maxBytes, progress, signal, o));
      return tmp;
    },
    async close() {},
  };
}

/**
 * An overlay image of this daemon's own image service, `file` its stored data: the caller's access
 * was checked as the image's GET checks it (serverLifecycle). What the HTTP path would refuse is
 * refused with the same words (no overlay there, over the cap, a child overlay). The job takes a
 * hard link of the file (images are renamed into place, never rewritten), so an image deleted
 * meanwhile does not change what is synthesized; synthesis verifies every byte as for a download.
 */
export function openStoredOverlay(file: string, url: string, maxBytes: number, o: OverlayFetchOptions = {}): OverlaySource {
  let r: OverlayReader;
  try { r = OverlayReader.open(file); } catch (e) { throw unreadable(url, `is no overlay: ${describeError(e)}`, o); }
  let manifest: OverlayManifest, overlayId: string;
  try {
    if (r.fileSize > maxBytes) throw new CloudletError('BadInput', `overlay at ${url} is ${r.fileSize} bytes, over this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
    ({ manifest, overlayId } = r);
  } finally { r.close(); }
  if (manifest.parent) throw childRefusal(url, manifest);
  return {
    overlayId, baseId: manifest.baseId,
    async prepare(tmp, progress) {
      try { fs.linkSync(file, tmp); } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw unreadable(url, 'the image was deleted before its synthesis started', o);
        // Another file system (a data dir spread over mounts): a copy.
        await onDiskFullAsync(tmp, 'synthesis: copying the overlay image', fs.promises.copyFile(file, tmp));
      }
      const size = fs.statSync(tmp).size;
      progress(size, size);
      return tmp;
    },
    async close() {},
  };
}

/** The image ID when `url` is exactly `<imageService>/v2/images/<UUID>/file`: an image of this daemon's own image service. */
export function ownImageId(url: URL, imageService: string): string | undefined {
  if (url.search || url.hash || url.username || url.password) return undefined;
  const prefix = `${imageService.replace(/\/+$/, '')}/v2/images/`;
  if (!url.href.startsWith(prefix)) return undefined;
  const m = /^([^/]+)\/file$/.exec(url.href.slice(prefix.length));
  return m && isImageId(m[1]) ? m[1] : undefined;
}

function childRefusal(url: string, manifest: OverlayManifest): CloudletError {
  return new CloudletError('BadInput', `overlay at ${url} is a child of overlay ${manifest.parent!.id.slice(0, 12)} (depth ${manifest.parent!.depth}): a child overlay is synthesized from an oci:// reference, whose repository holds its parents`, {
    hint: 'publish it with `cloudlet overlay publish` and use its oci:// reference, or make it standalone with `cloudlet overlay flatten`',
  });
}

/**
 * Whose pull this is: `credentials` as RegistryClient takes them (a login, undefined for the daemon
 * user's own, null for anonymous; registryCredentialsFor decides), `project` the cache scope.
 */
export interface OciAccess { credentials: Credentials | null | undefined; project: string }

export async function openOciOverlay(ref: string, dataDir: string, maxBytes: number, fo: OverlayFetchOptions, access: OciAccess): Promise<OverlaySource> {
  let oci;
  let reached = false;
  try {
    // A child overlay's whole chain is resolved and checked here, before any server exists.
    // The blob cache serves only what this project's own pulls downloaded (a digest is no key to a blob).
    oci = await openOverlayChainFromOci(ref, {
      cacheDir: blobCacheDirFor(dataDir), cacheScope: `project:${access.project}`, credentials: access.credentials, lookedUpLoginIsPrivate: true, ca: readCaFile(), plainHttp: plainHttpSetting(),
      addressPolicy: fo.policy ?? defaultOverlayPolicy(), onRegistryReached: () => { reached = true; }, maxBytes,
    });
  } catch (e) {
    if (isAddressRefusal(e)) throw outsideRanges(ref);
    // Until a registry answered, nothing is told about what did (see overlayFetch.ts).
    if (!reached) throw unreadable(ref, describeError(e), fo);
    // The registry refused the login (or its absence): its own code (403), never a 401 (which a client
    // takes for its own token's end) nor the cloudlet's Unauthorized/Forbidden (a client retries with the
    // user's registry login on this code alone). The registry's word stays in the message.
    if (isCloudletError(e, 'Unauthorized') || isCloudletError(e, 'Forbidden')) {
      throw new CloudletError('RegistryRefused', `overlay_url ${ref}: ${describeError(e)}`, { status: 403,
        hint: 'send your own login to that registry in cloudlet:registry_auth (the CLI and the extension send the one `cloudlet registry login` or `docker login` stored, on a retry after this refusal), or ask the cloudlet\'s operator to grant your project its login (registry_logins)' });
    }
    // A request error keeps its code and status (a parent missing from the repository is a 400, not a 404).
    const keep = e instanceof CloudletError && e.status < 500;
    throw new CloudletError(keep ? e.code : 'BadInput', `overlay_url ${ref}: ${describeError(e)}`, { hint: keep ? e.hint : undefined, status: keep ? e.status : undefined });
  }
  if (oci.totalBytes > maxBytes) {
    await oci.close();
    throw new CloudletError('BadInput', `overlay at ${ref} is ${oci.totalBytes} bytes, over this cloudlet's cap of ${maxBytes} bytes`, { status: 413 });
  }
  const c = oci, o = oci.leaf;
  return {
    overlayId: o.overlayId, baseId: o.baseId,
    async prepare(_tmp, progress) {
      // Synthesis pulls the segments itself; the registry sources report them as download progress (all hops together).
      const done = new Map<string, number>();
      for (const h of c.hops) h.source.progress = (e) => { done.set(h.overlayId, e.done ?? 0); progress([...done.values()].reduce((a, b) => a + b, 0), c.totalBytes); };
      const hops = new Map(c.chain.map((h) => [h.overlayId, h]));
      // A standalone overlay's file is written again from the pulled blobs for the VM to keep (handoff's round 0).
      return { manifest: o.manifest, overlayId: o.overlayId, source: o.source, parentLookup: async (id) => hops.get(id), ...(c.hops.length === 1 ? { keep: (file: string) => o.writeTo(file) } : {}) };
    },
    close: () => c.close(),
  };
}
