/**
 * Public API of the overlay module (see docs/overlay-format.md):
 *   createOverlay(base, launch, opts)            base + paused sandbox files -> overlay file
 *   OverlayReader.open(path)                     manifest, segment ranges, segments by name
 *   applyOverlay(overlay, source, base, opts)    synthesis: launch RAM + qcow2 + device state
 *   verifyOverlay(overlay, source, opts)         every check of apply, nothing built
 *   overlayInfo(manifest) / formatOverlayInfo    what the overlay is made of
 * Segments reach apply/verify through a SegmentSource, so a registry or HTTP Range client plugs in.
 */
export { createOverlay, DEFAULT_LEVEL } from './overlayWriter';
export type { BaseImages, LaunchImages, CreateOverlayOptions, CreateOverlayResult } from './overlayWriter';
export { OverlayReader, parseManifest, segmentRanges, checkSegmentDigest, segmentSourceFromDir } from './overlayReader';
export type { SegmentSource, SegmentRange } from './overlayReader';
export { applyOverlay, fetchSegment, LAUNCH_FILES } from './apply';
export type { ApplyBase, ApplyOptions, ApplyResult } from './apply';
export { verifyOverlay } from './verify';
export type { VerifyResult } from './verify';
export { overlayInfo, formatOverlayInfo } from './info';
export type { OverlayInfo, TargetInfo } from './info';
export { SegmentCompressor } from './segmentCompressor';
export type { OverlayManifest, SegmentEntry, Target } from './format';
export { CHUNK_SIZE, LIMITS, canonicalJson, CONTAINER_HEADER_SIZE } from './format';
