/**
 * `overlay publish`: pushes an overlay file as an OCI artifact. Each segment is a layer; a segment the
 * repository already has is skipped (HEAD), one another repository of the registry is known to hold is
 * mounted, only the rest is uploaded. The report says exactly how many bytes went and how many did not.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CloudletError, isCloudletError, throwIfCancelled } from '../common/errors';
import { hasProfile, PROFILES, recompressOverlay, type ProfileName } from '../overlay/recompress';
import { noProgress, ProgressSink } from '../common/progress';
import { BlobUploader, UploadResult } from './blobUploader';
import { formatReference, parseReference } from './reference';
import { OCI_MANIFEST } from './mediaTypes';
import { buildOverlayManifest, readOverlayArtifact } from './overlayArtifact';
import { parseOverlayManifest, readOverlayFile, readSegmentBytes } from './overlayFile';
import { overlayIdOf } from '../overlay/format';
import { mapLimit } from './parallel';
import { listPublications, mountSources, recordPublication } from './publishedRefs';
import { pullScope, RegistryClient, RegistryClientOptions } from './registryClient';
import { sha256Digest } from './digest';

export interface PublishOptions extends RegistryClientOptions {
  /** Uploads above this size go in chunked PATCHes (default 8 MiB). */
  chunkSize?: number;
  concurrency?: number;
  /** Extra repositories of the same registry to try mounting segments from. */
  mountFrom?: string[];
  progress?: ProgressSink;
  /** Store root for the publication history (default: CLOUDLET_HOME). */
  storeRoot?: string;
  /**
   * wire: re-compress the segments for size first (sandbox/overlay/recompress.ts; same overlay ID),
   * unless the file already is at that level; build (default here): publish the file as it is.
   */
  profile?: ProfileName;
  /** Where the re-compressed file is written while it is pushed (default: the OS temp folder). */
  tmpDir?: string;
}

export interface PublishReport {
  reference: string;          // HOST/REPO:TAG as given
  digestReference: string;    // HOST/REPO@sha256:... of the pushed manifest
  manifestDigest: string;
  overlayId: string;
  baseId: string;
  segments: { total: number; uploaded: number; skipped: number; mounted: number };
  segmentBytes: { total: number; uploaded: number; skipped: number; mounted: number };
  configUploaded: boolean;
  manifestSize: number;       // bytes of the OCI manifest pushed
  /** Every request body written: segments, config, manifest, and any re-sent bytes after failures. */
  bytesSent: number;
  retries: number;
  profile: ProfileName;
  /** Present when the segments were re-compressed for the wire before the push. */
  recompressed?: { fromBytes: number; toBytes: number; seconds: number };
  resumes: number;
  restarts: number;
  seconds: number;
}

export async function publishOverlay(file: string, refText: string, opts: PublishOptions = {}): Promise<PublishReport> {
  const profile = opts.profile ?? 'build';
  if (profile !== 'wire' || hasProfile(readOverlayFile(file).manifest, 'wire')) {
    return { ...(await publishFile(file, refText, opts)), profile };
  }
  parseReference(refText); // a bad reference fails before minutes of compression
  const dir = opts.tmpDir ?? os.tmpdir();
  fs.mkdirSync(dir, { recursive: true });
  const wireFile = path.join(dir, `wire-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.overlay`);
  try {
    opts.progress?.({ phase: 'recompress', message: `re-compressing the segments for the wire (xz ${PROFILES.wire.level}, one stream per image up to 128 MiB)` });
    const rc = await recompressOverlay(file, wireFile, { codec: PROFILES.wire, signal: opts.signal, progress: opts.progress });
    const r = await publishFile(wireFile, refText, opts);
    return { ...r, profile, recompressed: { fromBytes: rc.sourceBytes, toBytes: rc.bytes, seconds: rc.ms / 1000 } };
  } finally {
    fs.rmSync(wireFile, { force: true });
  }
}

async function publishFile(file: string, refText: string, opts: PublishOptions): Promise<Omit<PublishReport, 'profile' | 'recompressed'>> {
  const t0 = Date.now();
  const progress = opts.progress ?? noProgress;
  const ref = parseReference(refText);
  const info = readOverlayFile(file);
  const client = new RegistryClient(ref.registry, opts);
  try {
    await client.ping();
    // A child overlay is published only where its parent is: synthesis fetches the chain from here.
    const parent = info.manifest.parent ? await findParentInRepository(client, ref.repository, info.manifest.parent.id, info.overlayId, opts.storeRoot) : undefined;
    const uploader = new BlobUploader(client, ref.repository);
    const known = mountSources(ref.registry, ref.repository, opts.storeRoot);
    const total = info.segments.reduce((n, s) => n + s.size, 0);
    let done = 0;
    progress({ phase: 'upload', message: `publishing ${info.segments.length} segments to ${ref.registry}/${ref.repository}`, done, total, at: Date.now() });
    const tick = (n: number) => { done += n; progress({ phase: 'upload', done, total, at: Date.now() }); };

    const results: UploadResult[] = await mapLimit(info.segments, opts.concurrency ?? 4, async (seg) => {
      throwIfCancelled(opts.signal);
      const load = () => {
        const data = readSegmentBytes(info, seg);
        // Read again here: a segment that no longer matches its name is not published.
        if (sha256Digest(data) !== seg.digest) {
          throw new CloudletError('Corrupt', `overlay file ${file}: segment ${seg.digest} does not match its digest; refused to publish`);
        }
        return data;
      };
      const r = await uploader.upload({ size: seg.size, load }, seg.digest, {
        chunkSize: opts.chunkSize, onProgress: tick,
        mountFrom: [...(known.get(seg.digest) ?? []), ...(opts.mountFrom ?? [])],
      });
      if (r.outcome !== 'uploaded') tick(seg.size);
      return r;
    });

    const configDigest = sha256Digest(info.manifestBytes);
    const config = await uploader.upload(info.manifestBytes, configDigest, { chunkSize: opts.chunkSize });
    const manifest = buildOverlayManifest({
      overlayId: info.overlayId, baseId: info.baseId, configDigest, configSize: info.manifestBytes.length, segments: info.segments,
      parent: parent ? { overlayId: info.manifest.parent!.id, manifestDigest: parent } : undefined,
    });
    const manifestDigest = sha256Digest(manifest);
    // Push by tag when there is one (that also makes the digest reachable), else by digest.
    await client.putManifest(ref.repository, ref.tag ?? manifestDigest, manifest, OCI_MANIFEST);
    progress({ phase: 'upload', message: 'manifest pushed', done: total, total, at: Date.now() });

    const sum = (o: string) => results.filter((r) => r.outcome === o).reduce((n, r) => n + r.size, 0);
    const count = (o: string) => results.filter((r) => r.outcome === o).length;
    const all = [...results, config];
    const report: Omit<PublishReport, 'profile' | 'recompressed'> = {
      reference: formatReference({ ...ref, digest: undefined, tag: ref.tag ?? 'latest' }),
      digestReference: formatReference({ registry: ref.registry, repository: ref.repository, digest: manifestDigest }),
      manifestDigest,
      overlayId: info.overlayId,
      baseId: info.baseId,
      segments: { total: results.length, uploaded: count('uploaded'), skipped: count('skipped'), mounted: count('mounted') },
      segmentBytes: { total, uploaded: sum('uploaded'), skipped: sum('skipped'), mounted: sum('mounted') },
      configUploaded: config.outcome === 'uploaded',
      manifestSize: manifest.length,
      bytesSent: client.stats.bytesSent,
      retries: client.stats.retries,
      resumes: all.reduce((n, r) => n + r.resumes, 0),
      restarts: all.reduce((n, r) => n + r.restarts, 0),
      seconds: (Date.now() - t0) / 1000,
    };
    recordPublication({
      reference: report.reference, digestReference: report.digestReference, registry: ref.registry,
      repository: ref.repository, tag: ref.tag, manifestDigest, overlayId: info.overlayId, baseId: info.baseId,
      segments: info.segments.map((s) => s.digest), publishedAt: new Date().toISOString(),
    }, opts.storeRoot);
    return report;
  } finally {
    await client.close();
  }
}

/**
 * The OCI manifest digest of overlay `parentId` in `repo`: from this machine's publication history
 * first, else by the repository's tags (up to 200); each candidate fetched and its overlay ID
 * annotation compared, then its overlay manifest fetched and the ID recomputed. Refused (NotFound)
 * when the repository does not hold it.
 */
async function findParentInRepository(client: RegistryClient, repo: string, parentId: string, childId: string, storeRoot?: string): Promise<string> {
  // A tag's ID annotation only says where to look: the candidate's overlay manifest is fetched and its
  // ID recomputed, so a decoy tag cannot become the child's parent, and one broken artifact is skipped.
  const isParent = async (reference: string): Promise<string | undefined> => {
    try {
      const m = await client.getManifest(repo, reference);
      const artifact = readOverlayArtifact(m.body, m.mediaType, reference);
      if (artifact.overlayId !== parentId) return undefined;
      const manifestBytes = await client.fetchBlob(repo, artifact.configDigest, artifact.configSize);
      const manifest = parseOverlayManifest(manifestBytes, `${repo}:${reference}`);
      return overlayIdOf(manifest, manifestBytes) === parentId ? m.digest : undefined;
    } catch (e) {
      if (isCloudletError(e, 'NotFound') || isCloudletError(e, 'BadInput') || isCloudletError(e, 'Corrupt')) return undefined;
      throw e;
    }
  };
  const known = listPublications(storeRoot).filter((p) => p.registry === client.registry && p.repository === repo && p.overlayId === parentId).reverse();
  for (const p of known) {
    const d = await isParent(p.manifestDigest);
    if (d) return d;
  }
  const r = await client.send('GET', `/v2/${repo}/tags/list?n=200`, { scopes: [pullScope(repo)], what: `tag list of ${client.registry}/${repo}` });
  if (r.status === 200) {
    let tags: unknown;
    try { tags = (JSON.parse(r.body.toString('utf8')) as { tags?: unknown }).tags; } catch { tags = undefined; }
    if (Array.isArray(tags)) {
      for (const t of tags.slice(0, 200)) {
        if (typeof t !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(t)) continue;
        const d = await isParent(t);
        if (d) return d;
      }
    }
  }
  throw new CloudletError('NotFound', `overlay ${childId.slice(0, 12)} is stored against its parent overlay ${parentId}, which ${client.registry}/${repo} does not hold: publish ${parentId.slice(0, 12)} there first`, {
    hint: `cloudlet overlay publish ${parentId.slice(0, 12)} ${client.registry}/${repo}:TAG`, status: 400,
  });
}
