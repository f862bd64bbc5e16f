/**
 * Overlay files for registry tests that do not need a VM: valid containers (header, canonical
 * manifest that passes validateManifest, segments in order) whose segments are random bytes.
 * `changeSegments` makes a "next version" sharing all but the given segments.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import { canonicalJson, CHUNK_SIZE, emptyBreakdown, encodeContainerHeader, overlayIdOf, segmentName } from '../../../sandbox/overlay/format';

export interface SyntheticOverlay {
  file: string;
  overlayId: string;
  segments: { digest: string; size: number; data: Buffer }[];
}

export function writeSyntheticOverlay(file: string, segmentData: Buffer[], baseId = 'ab'.repeat(32)): SyntheticOverlay {
  const chunkSegs = segmentData.slice(0, -1);
  const segments = segmentData.map((data, i) => {
    const digest = segmentName(data);
    if (i === segmentData.length - 1) return { digest, kind: 'device-state', size: data.length, rawSize: data.length };
    return { digest, kind: 'chunks', target: 'ram', size: data.length, rawSize: data.length, records: 1, chunks: [[i, 1]] };
  });
  const manifest = {
    format: 'cloudlet-overlay', version: 1, baseId, chunkSize: CHUNK_SIZE,
    ram: { size: CHUNK_SIZE * Math.max(1, chunkSegs.length) }, disk: { size: 0 },
    base: { ramSize: CHUNK_SIZE * Math.max(1, chunkSegs.length), diskSize: 0 },
    compression: { algorithm: 'zstd', level: 3 }, vmConfig: {}, segments,
    breakdown: { ram: emptyBreakdown(), disk: emptyBreakdown(), deviceStateBytes: 0 },
  };
  const manifestBytes = Buffer.from(canonicalJson(manifest));
  fs.writeFileSync(file, Buffer.concat([encodeContainerHeader(manifestBytes), manifestBytes, ...segmentData]));
  return { file, overlayId: overlayIdOf(manifestBytes), segments: segments.map((s, i) => ({ digest: s.digest, size: s.size, data: segmentData[i] })) };
}

export function randomSegments(n: number, size: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => crypto.randomBytes(size + i * 17));
}
