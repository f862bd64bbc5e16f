/**
 * The OCI form of an overlay: an image manifest (1.1) with artifactType, the overlay manifest as the
 * config blob and one layer per segment, in the overlay's order. The overlay ID (which names the
 * content, not the compression: sandbox/overlay/format.ts overlayIdOf) is an annotation; for
 * overlays written before issue 13 it equals the config digest.
 * `readOverlayArtifact` is the gate on the pull side: anything else (a container image, an index,
 * a foreign artifact) is refused with a message that says what it is.
 */
import { CloudletError } from '../common/errors';
import { isDigest } from './digest';
import { LIMITS } from '../overlay/formatConstants';
import {
  ANNOTATION_BASE_ID, ANNOTATION_OVERLAY_ID, ANNOTATION_PARENT, ANNOTATION_PARENT_MANIFEST, ANNOTATION_TITLE, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2, OCI_INDEX, OCI_MANIFEST,
  OVERLAY_ARTIFACT_TYPE, OVERLAY_CONFIG, OVERLAY_SEGMENT,
} from './mediaTypes';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface OverlayArtifact {
  configDigest: string;    // sha256 of the overlay manifest bytes
  configSize: number;
  overlayId: string;
  baseId: string;
  layers: Descriptor[];    // segments, in overlay order
  /** A child overlay: its parent's overlay ID and OCI manifest digest (same repository). */
  parent?: { overlayId: string; manifestDigest: string };
}

/** A segment's file name in generic OCI tools: the overlay's short ID and the segment's place. */
export function segmentTitle(overlayId: string, index: number): string {
  return `overlay-${overlayId.slice(0, 12)}-segment-${String(index).padStart(4, '0')}.zst`;
}

export function buildOverlayManifest(a: { overlayId: string; baseId: string; configDigest: string; configSize: number;
  segments: { digest: string; size: number }[]; parent?: { overlayId: string; manifestDigest: string } }): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: OVERLAY_ARTIFACT_TYPE,
    config: { mediaType: OVERLAY_CONFIG, digest: a.configDigest, size: a.configSize },
    // A file name per layer, so generic tools (oras pull) write the segments to files in order.
    layers: a.segments.map((s, i) => ({ mediaType: OVERLAY_SEGMENT, digest: s.digest, size: s.size, annotations: { [ANNOTATION_TITLE]: segmentTitle(a.overlayId, i) } })),
    // No timestamps: the same overlay always gives the same manifest digest.
    annotations: {
      [ANNOTATION_OVERLAY_ID]: a.overlayId, [ANNOTATION_BASE_ID]: a.baseId,
      ...(a.parent ? { [ANNOTATION_PARENT]: a.parent.overlayId, [ANNOTATION_PARENT_MANIFEST]: a.parent.manifestDigest } : {}),
    },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/** Parses and checks a pulled manifest; `what` names the reference in messages. */
export function readOverlayArtifact(body: Buffer, mediaType: string, what: string): OverlayArtifact {
  const notOverlay = (is: string) => new CloudletError('BadInput', `${what} is not a Cloudlet overlay: it is ${is}`, {
    hint: `publish an overlay there with: cloudlet overlay publish OVERLAY ${what.replace(/^oci:\/\//, '')}`,
  });
  if (mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST) throw notOverlay(`a multi-platform image index (${mediaType})`);
  if (mediaType === DOCKER_MANIFEST_V2) throw notOverlay(`a Docker container image (${mediaType})`);
  if (mediaType !== OCI_MANIFEST) throw notOverlay(`a manifest of type ${mediaType || 'unknown'}`);
  const m = JSON.parse(body.toString('utf8')) as {
    artifactType?: string; config?: Descriptor; layers?: Descriptor[]; annotations?: Record<string, string>;
  };
  const configType = m.config?.mediaType;
  if (m.artifactType !== OVERLAY_ARTIFACT_TYPE && configType !== OVERLAY_CONFIG) {
    const kind = m.artifactType ? `an artifact of type ${m.artifactType}`
      : configType === 'application/vnd.oci.image.config.v1+json' ? `an OCI container image (config ${configType})`
        : `an OCI manifest with config type ${configType ?? 'none'}`;
    throw notOverlay(kind);
  }
  const bad = (why: string) => new CloudletError('Corrupt', `${what}: malformed overlay artifact: ${why}`);
  if (!m.config || configType !== OVERLAY_CONFIG || !isDigest(m.config.digest) || !Number.isSafeInteger(m.config.size)) {
    throw bad('its config is not an overlay manifest');
  }
  // Refused before any byte of it is downloaded: the config is held in memory whole.
  if (m.config.size < 2 || m.config.size > LIMITS.manifestBytes) throw bad(`its overlay manifest is ${m.config.size} bytes (at most ${LIMITS.manifestBytes})`);
  if (!Array.isArray(m.layers)) throw bad('no layers');
  for (const l of m.layers) {
    if (!l || l.mediaType !== OVERLAY_SEGMENT || !isDigest(l.digest) || !Number.isSafeInteger(l.size) || l.size < 0) {
      throw bad(`layer ${JSON.stringify(l?.digest ?? l).slice(0, 80)} is not an overlay segment`);
    }
  }
  const annotated = m.annotations?.[ANNOTATION_OVERLAY_ID];
  if (annotated !== undefined && !/^[0-9a-f]{64}$/.test(annotated)) throw bad(`its overlay ID annotation ${JSON.stringify(String(annotated).slice(0, 80))} is not 64 hex digits`);
  // The manifest's own ID is computed and compared once the config blob is fetched (ociOverlaySource).
  const overlayId = annotated ?? m.config.digest.slice('sha256:'.length);
  const parentId = m.annotations?.[ANNOTATION_PARENT], parentManifest = m.annotations?.[ANNOTATION_PARENT_MANIFEST];
  if (parentId !== undefined || parentManifest !== undefined) {
    if (typeof parentId !== 'string' || !/^[0-9a-f]{64}$/.test(parentId)) throw bad(`its parent annotation ${JSON.stringify(String(parentId).slice(0, 80))} is not 64 hex digits`);
    if (typeof parentManifest !== 'string' || !isDigest(parentManifest)) throw bad(`its parent manifest annotation ${JSON.stringify(String(parentManifest).slice(0, 80))} is not a sha256 digest`);
  }
  return {
    configDigest: m.config.digest, configSize: m.config.size, overlayId,
    baseId: m.annotations?.[ANNOTATION_BASE_ID] ?? '', layers: m.layers,
    ...(parentId ? { parent: { overlayId: parentId, manifestDigest: parentManifest! } } : {}),
  };
}
