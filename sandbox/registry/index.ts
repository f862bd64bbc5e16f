/**
 * Public API of sandbox/registry: publish and pull overlays as OCI artifacts, and open an overlay
 * straight from a registry reference as a SegmentSource (for synthesis from `oci://` URLs).
 */
export { publishOverlay } from './publishOverlay';
export type { PublishOptions, PublishReport } from './publishOverlay';
export { pullOverlay } from './pullOverlay';
export type { PullReport } from './pullOverlay';
export { openOverlayFromOci, openOverlayChainFromOci, RegistrySegmentSource, blobCacheDirFor } from './ociOverlaySource';
export type { OciOverlay, OciOverlayChain, OciOverlayOptions, SegmentSource } from './ociOverlaySource';
export { parseReference, formatReference, isOciUrl } from './reference';
export type { Reference } from './reference';
export { Credentials, lookupCredentials, storeCredentials, removeCredentials, dockerConfigPath } from './credentials';
export { RegistryClient } from './registryClient';
export type { RegistryClientOptions, TransferStats } from './registryClient';
export { listPublications, publicationsOf, recordPublication } from './publishedRefs';
export type { Publication } from './publishedRefs';
export { BlobCache, defaultBlobCacheDir } from './blobCache';
export { readCaFile, plainHttpSetting } from './options';
export * as mediaTypes from './mediaTypes';
