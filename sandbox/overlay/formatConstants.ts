/**
 * The overlay format's constants and names, apart from format.ts so that the manifest's JSON Schema
 * (manifestSchema.ts), which format.ts runs, can use them without an import cycle. format.ts
 * re-exports them: import them from there.
 */
export const CHUNK_SIZE = 4096;
export const FORMAT_NAME = 'cloudlet-overlay';
export const FORMAT_VERSION = 1;
/**
 * Container versions: 1 = every segment stored on its own (zstd); 2 = segments stored in
 * compression units (xz: the wire profile). The manifest's `version` stays FORMAT_VERSION.
 */
export const CONTAINER_VERSION_SEGMENTS = 1;
export const CONTAINER_VERSION_UNITS = 2;
/** The xz decoder's memory limit: LZMA2 at preset 9 (64 MiB dictionary) needs ~65 MiB; a larger dictionary is refused. */
export const XZ_DECODER_MEMLIMIT = 72 << 20;
/** A segment never holds more records than this (zero/copy records carry no payload). */
export const SEGMENT_MAX_RECORDS = 16384;
// Sanity limits checked before anything is allocated (decompression bombs, absurd manifests).
export const LIMITS = {
  manifestBytes: 64 << 20,
  segmentRawBytes: 64 << 20,   // declared and actual decompressed size of one segment
  segmentBytes: 80 << 20,      // compressed size of one segment
  ramBytes: 2 ** 40,           // 1 TiB of guest RAM
  diskBytes: 2 ** 44,          // 16 TiB: chunk indices stay below 2^32
  segments: 1 << 22,
  unitRawBytes: 128 << 20,     // decompressed size of one compression unit (the segments it holds)
  unitBytes: 136 << 20,        // compressed size of one compression unit
};
/** Hops from a child overlay to its root (an overlay against the base): parent.depth is 1..this. */
export const MAX_CHAIN_DEPTH = 4;
export const ENCODING_NAMES = ['zero', 'baseRam', 'baseDisk', 'self', 'raw', 'xor'] as const;
export type EncodingName = (typeof ENCODING_NAMES)[number];
export type Target = 'ram' | 'disk';
export const TARGETS: Target[] = ['ram', 'disk'];
