/**
 * Overlays straight from a registry: resolve a reference, refuse anything that is not an overlay,
 * fetch and check the overlay manifest (the config blob; its digest is the overlay ID), and serve
 * segments as a SegmentSource: fetched in parallel, each digest verified while it streams, cached
 * by digest. This is what synthesis uses for `oci://` overlay URLs.
 */
import * as path from 'path';
import { CloudletError, isCloudletError, throwIfCancelled } from '../common/errors';
import { resolveChain, type ChainHop } from '../overlay/parentChain';
import { noProgress, ProgressSink } from '../common/progress';
import { OverlayManifest, overlayIdOf, storedBlobs } from '../overlay/format';
import { LIMITS } from '../overlay/formatConstants';
import type { SegmentSource } from '../overlay/overlayReader';
import { BlobCache, defaultBlobCacheDir } from './blobCache';
import { Credentials } from './credentials';
import { Descriptor, readOverlayArtifact } from './overlayArtifact';
import { parseOverlayManifest, writeOverlayFile } from './overlayFile';
import { mapLimit } from './parallel';
import { formatReference, manifestRef, parseReference, Reference } from './reference';
import { RegistryClient, RegistryClientOptions, TransferStats } from './registryClient';

export type { SegmentSource };

export interface OciOverlayOptions extends RegistryClientOptions {
  /** Verified-blob cache (default <store>/cache/blobs). */
  cacheDir?: string;
  /** Whose cached blobs this open may use (a daemon: the caller's project); see BlobCache. Unset: all of them. */
  cacheScope?: string;
  credentials?: Credentials | null;
  progress?: ProgressSink;
  /** Parallel segment downloads (default 4). */
  concurrency?: number;
  /** Called once the registry answered its API's ping: what fails after that is about the overlay. */
  onRegistryReached?: () => void;
  /** A cap on the compressed bytes of the overlay and, for a child, its whole chain: checked after each hop. */
  maxBytes?: number;
  /** Overlay-manifest bytes this open may still download (a chain shares LIMITS.manifestBytes). */
  manifestBytesLeft?: number;
}

export interface OciOverlay {
  reference: string;          // as resolved, HOST/REPO@sha256:...
  manifestDigest: string;
  overlayId: string;
  baseId: string;
  manifest: OverlayManifest;
  manifestBytes: Buffer;
  segments: Descriptor[];
  /** A child overlay: where its parent is in the same repository (checked against the manifest's parent.id). */
  parent?: { overlayId: string; manifestDigest: string };
  /** Sum of the segments' compressed sizes (for size caps before anything is downloaded). */
  totalBytes: number;
  source: RegistrySegmentSource;
  stats: TransferStats;
  /**
   * Writes the overlay file (byte-identical to the published one) to `file`, via `file.partial`:
   * segments fetched in parallel, verified, cached. For callers that synthesize from a file.
   */
  writeTo(file: string, progress?: ProgressSink): Promise<void>;
  close(): Promise<void>;
}

export class RegistrySegmentSource implements SegmentSource {
  private readonly sizes = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  readonly counts = { fromCache: 0, downloaded: 0, bytesDownloaded: 0 };
  private done = 0;
  private readonly seen = new Set<string>();   // progress and counts: each segment once
  private readonly total: number;

  constructor(private readonly client: RegistryClient, private readonly ref: Reference, layers: Descriptor[],
    private readonly cache: BlobCache, public progress: ProgressSink, private readonly concurrency: number) {
    for (const l of layers) this.sizes.set(l.digest, l.size);
    this.total = layers.reduce((n, l) => n + l.size, 0);
  }

  /** A segment's compressed bytes, verified; from the cache when it has them. */
  getSegment(digest: string, expectedSize?: number): Promise<Buffer> {
    const size = this.sizes.get(digest);
    if (size === undefined) {
      return Promise.reject(new CloudletError('BadInput', `segment ${digest} is not part of overlay ${formatReference(this.ref)}`));
    }
    if (expectedSize !== undefined && expectedSize !== size) {
      return Promise.reject(new CloudletError('Corrupt', `segment ${digest}: the overlay manifest says ${expectedSize} bytes, the registry artifact ${size}`));
    }
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.load(digest, size);
      this.inflight.set(digest, p);
      // Keep memory bounded: once settled the bytes live in the cache, not here.
      p.then(() => this.inflight.delete(digest), () => this.inflight.delete(digest));
    }
    return p;
  }

  private async load(digest: string, size: number): Promise<Buffer> {
    const cached = await this.cache.get(digest);
    if (cached && cached.length === size) {
      if (this.first(digest)) { this.counts.fromCache++; this.tick(size); }
      return cached;
    }
    const data = await this.client.fetchBlob(this.ref.repository, digest, size);
    await this.cache.put(digest, data);
    this.counts.bytesDownloaded += size;
    if (this.first(digest)) { this.counts.downloaded++; this.tick(size); }
    return data;
  }

  private first(digest: string): boolean {
    if (this.seen.has(digest)) return false;
    this.seen.add(digest);
    return true;
  }

  private tick(n: number): void {
    this.done += n;
    this.progress({ phase: 'download', done: this.done, total: this.total, at: Date.now() });
  }

  /** Fetches every segment (or the given ones) in parallel into the cache. */
  async prefetch(digests: string[] = [...this.sizes.keys()]): Promise<void> {
    await mapLimit(digests, this.concurrency, async (d) => { await this.getSegment(d); });
  }
}

export async function openOverlayFromOci(refText: string, opts: OciOverlayOptions = {}): Promise<OciOverlay> {
  const ref = parseReference(refText);
  const what = formatReference(ref, { oci: true });
  const client = new RegistryClient(ref.registry, opts);
  try {
    throwIfCancelled(opts.signal);
    try {
      await client.ping();
    } catch (e) {
      // A login refused or asked for is a registry's answer: the caller may learn it (which credentials to send).
      if (isCloudletError(e, 'Unauthorized') || isCloudletError(e, 'Forbidden')) opts.onRegistryReached?.();
      throw e;
    }
    opts.onRegistryReached?.();
    const m = await client.getManifest(ref.repository, manifestRef(ref));
    const artifact = readOverlayArtifact(m.body, m.mediaType, what);
    if (opts.manifestBytesLeft !== undefined && artifact.configSize > opts.manifestBytesLeft) {
      throw new CloudletError('BadInput', `${what}: its chain's overlay manifests pass ${LIMITS.manifestBytes} bytes together; refused`);
    }
    const cache = new BlobCache(opts.cacheDir ?? defaultBlobCacheDir(), opts.cacheScope);
    // The overlay manifest is small and its digest is the overlay ID: verify, then check it agrees with the layers.
    let manifestBytes = await cache.get(artifact.configDigest);
    if (!manifestBytes) {
      manifestBytes = await client.fetchBlob(ref.repository, artifact.configDigest, artifact.configSize);
      await cache.put(artifact.configDigest, manifestBytes);
    }
    const manifest = parseOverlayManifest(manifestBytes, what);
    // Layers are what the container stores: each segment (zstd) or each compression unit (xz).
    const listed = storedBlobs(manifest).map((s) => `${s.digest}/${s.size}`).join(',');
    const layers = artifact.layers.map((l) => `${l.digest}/${l.size}`).join(',');
    if (listed !== layers) {
      throw new CloudletError('Corrupt', `${what}: the artifact's layers do not match the segments its overlay manifest names`);
    }
    if (artifact.baseId && artifact.baseId !== manifest.baseId) {
      throw new CloudletError('Corrupt', `${what}: the base ID annotation (${artifact.baseId}) differs from the overlay manifest's (${manifest.baseId})`);
    }
    const overlayId = overlayIdOf(manifest, manifestBytes);
    if (overlayId !== artifact.overlayId) {
      throw new CloudletError('Corrupt', `${what}: the overlay manifest's ID is ${overlayId}, the artifact says ${artifact.overlayId}`);
    }
    // The manifest's parent.id (covered by the overlay ID) is the truth; the annotation only says where it is.
    if ((manifest.parent?.id ?? '') !== (artifact.parent?.overlayId ?? '')) {
      throw new CloudletError('Corrupt', `${what}: the overlay manifest names parent ${manifest.parent?.id ?? 'none'}, the artifact's annotation ${artifact.parent?.overlayId ?? 'none'}`);
    }
    const source = new RegistrySegmentSource(client, ref, artifact.layers, cache, opts.progress ?? noProgress, opts.concurrency ?? 4);
    const digests = artifact.layers.map((l) => l.digest);
    return {
      reference: formatReference({ ...ref, tag: undefined, digest: m.digest }),
      manifestDigest: m.digest, overlayId, baseId: manifest.baseId, manifest, manifestBytes, parent: artifact.parent,
      segments: artifact.layers, totalBytes: artifact.layers.reduce((n, l) => n + l.size, 0), source, stats: client.stats,
      writeTo: async (file, progress) => {
        if (progress) source.progress = progress;
        await source.prefetch();
        await writeOverlayFile(file, manifestBytes!, digests, (d) => source.getSegment(d));
      },
      close: () => client.close(),
    };
  } catch (e) {
    await client.close();
    throw e;
  }
}

/** A child overlay and its parents from one repository: `hops` root first, the overlay asked for last. */
export interface OciOverlayChain {
  leaf: OciOverlay;
  hops: OciOverlay[];
  chain: ChainHop[];
  /** Compressed segment bytes of every hop. */
  totalBytes: number;
  close(): Promise<void>;
}

/**
 * Opens an overlay and, for a child, its whole chain from the same repository (each parent by the
 * manifest digest its child's artifact names), checked by resolveChain before any segment is
 * fetched: every parent found (else NotFound: "pull or publish it first"), its ID recomputed from
 * its manifest and equal to the child's reference, same base and VM, depth, at most 4 hops.
 */
export async function openOverlayChainFromOci(refText: string, opts: OciOverlayOptions = {}): Promise<OciOverlayChain> {
  const ref = parseReference(refText);
  const leaf = await openOverlayFromOci(refText, opts);
  const opened: OciOverlay[] = [leaf];
  const closeAll = async () => { await Promise.all(opened.map((o) => o.close())); };
  const where = new Map<string, string>();
  const learn = (o: OciOverlay) => { if (o.parent) where.set(o.parent.overlayId, o.parent.manifestDigest); };
  learn(leaf);
  const hopOf = (o: OciOverlay): ChainHop => ({ manifest: o.manifest, overlayId: o.overlayId, source: o.source });
  const byId = new Map<string, OciOverlay>([[leaf.overlayId, leaf]]);
  // What the chain may weigh, counted hop by hop so a long or heavy chain stops early, not after every download.
  let manifestBytesLeft = LIMITS.manifestBytes - leaf.manifestBytes.length;
  let segmentBytes = leaf.totalBytes;
  const overCap = () => new CloudletError('BadInput', `overlay at ${refText} and its parents are over ${opts.maxBytes} bytes together, this cloudlet's cap`, { status: 413 });
  try {
    if (opts.maxBytes !== undefined && segmentBytes > opts.maxBytes) throw overCap();
    const chain = await resolveChain(hopOf(leaf), async (id) => {
      const digest = where.get(id);
      if (!digest) return undefined;
      let o: OciOverlay;
      try {
        o = await openOverlayFromOci(formatReference({ registry: ref.registry, repository: ref.repository, digest }), { ...opts, onRegistryReached: undefined, manifestBytesLeft });
      } catch (e) {
        if (isCloudletError(e, 'NotFound')) return undefined;
        throw e;
      }
      opened.push(o);
      manifestBytesLeft -= o.manifestBytes.length;
      segmentBytes += o.totalBytes;
      if (opts.maxBytes !== undefined && segmentBytes > opts.maxBytes) throw overCap();
      byId.set(o.overlayId, o);
      learn(o);
      return hopOf(o);
    });
    const hops = chain.map((h) => byId.get(h.overlayId)!);
    return { leaf, hops, chain, totalBytes: hops.reduce((n, h) => n + h.totalBytes, 0), close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** Cache location helper for callers that keep their own store root (the daemon's --data). */
export function blobCacheDirFor(storeRoot: string): string {
  return path.join(storeRoot, 'cache', 'blobs');
}
