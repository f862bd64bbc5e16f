/**
 * Media types of an overlay published as an OCI artifact (OCI image manifest 1.1 with artifactType).
 * The config blob is the overlay's own manifest, byte for byte, so its digest is the overlay ID; each
 * layer is one segment as stored in the overlay file (already compressed, named by its SHA-256).
 * The config media type repeats the artifact type for registries and tools that predate artifactType.
 */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

export const OVERLAY_ARTIFACT_TYPE = 'application/vnd.cloudlet.overlay.v1';
export const OVERLAY_CONFIG = 'application/vnd.cloudlet.overlay.manifest.v1+json';
export const OVERLAY_SEGMENT = 'application/vnd.cloudlet.overlay.segment.v1';

/** Annotation keys on the OCI manifest. */
export const ANNOTATION_OVERLAY_ID = 'org.cloudlet.overlay.id';
export const ANNOTATION_BASE_ID = 'org.cloudlet.base.id';
/** A child overlay (sandbox/overlay/parentChain.ts): its parent's overlay ID, and that parent's OCI manifest digest in the same repository. */
export const ANNOTATION_PARENT = 'org.cloudlet.overlay.parent';
export const ANNOTATION_PARENT_MANIFEST = 'org.cloudlet.overlay.parent.manifest';
export const ANNOTATION_TITLE = 'org.opencontainers.image.title';

/** Accept header for manifest GETs: everything we can recognise, so a refusal can name what it got. */
export const MANIFEST_ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST].join(', ');
