/**
 * What an overlay is made of, from its manifest alone: chunks and bytes by encoding and by source,
 * disk vs memory, compressed vs raw. `overlay info`, the extension's Overlay panel and the daemon's
 * image properties all use this shape.
 */
import { CHUNK_SIZE, compressedBytesOf, ENCODING_NAMES, EncodingName, OverlayManifest, Target } from './format';
import { formatBytes } from '../common/bytes';

export interface CountBytes { chunks: number; bytes: number }

export interface TargetInfo {
  changedChunks: number;
  changedBytes: number;                          // chunks x 4 KiB: what the guest changed
  byEncoding: Record<EncodingName, CountBytes>;
  bySource: Record<'zero' | 'baseRam' | 'baseDisk' | 'overlayRam' | 'overlayDisk' | 'literal', CountBytes>;
  storedBytes: number;                           // raw + xor payload, before compression
  segmentRawBytes: number;                       // decompressed segments (records + payload)
  compressedBytes: number;
  segments: number;
}

export interface OverlayInfo {
  overlayId?: string;
  baseId: string;
  /** A child overlay: the parent it is stored against, and its hops to the base. */
  parent?: { id: string; depth: number };
  /** When resolved (overlay info/verify): the chain, root first, this overlay last. */
  chain?: string[];
  compression: { algorithm: string; level: number };
  vmConfig: unknown;
  ramSize: number;
  diskSize: number;
  ram: TargetInfo;
  disk: TargetInfo;
  deviceState: { rawBytes: number; compressedBytes: number };
  total: { changedBytes: number; rawBytes: number; compressedBytes: number; segments: number; fileBytes?: number };
}

const cb = (chunks: number): CountBytes => ({ chunks, bytes: chunks * CHUNK_SIZE });

export function overlayInfo(m: OverlayManifest, extra: { overlayId?: string; fileBytes?: number; chain?: string[] } = {}): OverlayInfo {
  const target = (t: Target): TargetInfo => {
    const b = m.breakdown[t];
    const e = b.encodings;
    const byEncoding = Object.fromEntries(ENCODING_NAMES.map((n) => [n, cb(e[n])])) as Record<EncodingName, CountBytes>;
    return {
      changedChunks: b.chunks,
      changedBytes: b.chunks * CHUNK_SIZE,
      byEncoding,
      bySource: {
        zero: cb(e.zero), baseRam: cb(e.baseRam), baseDisk: cb(e.baseDisk),
        overlayRam: cb(b.selfFrom.ram), overlayDisk: cb(b.selfFrom.disk), literal: cb(e.raw + e.xor),
      },
      storedBytes: b.payloadBytes,
      segmentRawBytes: b.segmentRawBytes,
      compressedBytes: b.compressedBytes,
      segments: b.segments,
    };
  };
  const ds = m.segments.find((s) => s.kind === 'device-state');
  const ram = target('ram'), disk = target('disk');
  const deviceState = { rawBytes: ds?.rawSize ?? 0, compressedBytes: compressedBytesOf(m, 'device-state') };
  return {
    overlayId: extra.overlayId, baseId: m.baseId, ...(m.parent ? { parent: m.parent } : {}), ...(extra.chain ? { chain: extra.chain } : {}), compression: { algorithm: m.compression.algorithm, level: m.compression.level }, vmConfig: m.vmConfig,
    ramSize: m.ram.size, diskSize: m.disk.size, ram, disk, deviceState,
    total: {
      changedBytes: ram.changedBytes + disk.changedBytes,
      rawBytes: ram.segmentRawBytes + disk.segmentRawBytes + deviceState.rawBytes,
      compressedBytes: ram.compressedBytes + disk.compressedBytes + deviceState.compressedBytes,
      segments: m.segments.length,
      fileBytes: extra.fileBytes,
    },
  };
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)}%` : '-');

/** Human-readable table of an OverlayInfo. */
export function formatOverlayInfo(i: OverlayInfo): string {
  const lines: string[] = [];
  if (i.overlayId) lines.push(`overlay   ${i.overlayId}`);
  lines.push(`base      ${i.baseId}`);
  if (i.parent) lines.push(`parent    ${i.parent.id} (depth ${i.parent.depth}: stored against that overlay's launch)`);
  if (i.chain) lines.push(`chain     base -> ${i.chain.map((id) => id.slice(0, 12)).join(' -> ')}`);
  lines.push(`size      ${formatBytes(i.total.compressedBytes)} compressed (${i.compression.algorithm} level ${i.compression.level}) from ${formatBytes(i.total.rawBytes)} stored, ${formatBytes(i.total.changedBytes)} changed; ${i.total.segments} segments` + (i.total.fileBytes ? `; file ${formatBytes(i.total.fileBytes)}` : ''));
  for (const t of ['disk', 'ram'] as const) {
    const x = i[t];
    lines.push('');
    lines.push(`${t === 'ram' ? 'memory' : 'disk'}: ${x.changedChunks} changed chunks (${formatBytes(x.changedBytes)} of ${formatBytes(t === 'ram' ? i.ramSize : i.diskSize)}) -> ${formatBytes(x.storedBytes)} stored -> ${formatBytes(x.compressedBytes)} compressed in ${x.segments} segments`);
    lines.push(`  by encoding: ` + ENCODING_NAMES.filter((n) => x.byEncoding[n].chunks).map((n) => `${n} ${x.byEncoding[n].chunks} (${pct(x.byEncoding[n].chunks, x.changedChunks)})`).join(', '));
    const src = x.bySource;
    lines.push(`  by source:   ` + (Object.keys(src) as Array<keyof typeof src>).filter((k) => src[k].chunks).map((k) => `${k} ${src[k].chunks} (${formatBytes(src[k].bytes)})`).join(', '));
  }
  lines.push('');
  lines.push(`device state: ${formatBytes(i.deviceState.rawBytes)} -> ${formatBytes(i.deviceState.compressedBytes)}`);
  return lines.join('\n');
}
