/**
 * The handoff wire protocol between two daemons (docs/api.md, "Handoff"). Routes live under the
 * destination's compute prefix and need a token of the destination's project:
 *   POST   /os-cloudlet-handoff                 begin: {handoff: {name, base_id, vm_config, ports, flavor_id, metadata}};
 *                                                answer {session: {id, heartbeat_ms, features, base_state_sha256?}}
 *   PUT    /os-cloudlet-handoff/{sid}/rounds/{n} one round (octet-stream, see encodeRoundBody); the final
 *                                                one may finish too (header finish: true; answer carries finish's)
 *   PUT    /os-cloudlet-handoff/{sid}/heartbeat  the source is still there (a silent session is dropped)
 *   POST   /os-cloudlet-handoff/{sid}/finish     build launch files, resume, create the server
 *   PUT    /os-cloudlet-handoff/{sid}/report     the source's measurements, kept in the server's metadata
 *   DELETE /os-cloudlet-handoff/{sid}            abort: drop everything the session received
 * A round body is: u32 BE header length, header JSON {round, final, segments: SegmentEntry[]},
 * then the compressed segments in header order. Segments use the overlay format unchanged; the
 * destination checks the header as strictly as an overlay manifest before reading on (roundReader.ts).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import { CloudletError } from '../common/errors';
import type { CompressionUnit, SegmentEntry } from '../overlay/format';
import { parseSavedState, type SavedState } from '../qemu/migrationStream';

export const HANDOFF_PATH = '/os-cloudlet-handoff';

/**
 * What this destination understands beyond the first protocol, named in begin's answer. A source
 * uses a feature only when the destination names it (cloudlets of different releases hand off):
 *   final-finish      the final round may carry finish: true (one request instead of round + finish)
 *   state-after-base  the final round may carry state_after_base: true: its device state continues the
 *                     base's saved state (the pages of the ROM blocks that differ from the base's, then
 *                     the devices), and the destination puts the base's head and ROM pages before it.
 *                     Named only with `base_state_sha256` in begin's answer (the SHA-256 of the destination's
 *                     state.bin of that base); a source uses it only when that is its own base's.
 *   xz-units          a round may carry `units` (the wire profile's xz compression units, format.ts
 *                     CompressionUnit) over its segments: the body then holds the units' bytes, not the
 *                     segments', each decoded as it arrives with synthesis's bounds (roundReader.ts). Round 0
 *                     from a launch overlay stored with the wire profile goes so (launchRound.ts); a
 *                     destination that does not name it gets round 0 by compare, as before.
 */
export const HANDOFF_FEATURES = ['final-finish', 'state-after-base', 'xz-units'] as const;
export type HandoffFeature = (typeof HANDOFF_FEATURES)[number];

export interface BeginRequest {
  name: string;
  base_id: string;
  vm_config: Record<string, unknown> & { ramBytes: number };
  ports: number[];
  flavor_id?: string;
  metadata?: Record<string, string>;
}

/**
 * `finish`: the destination finishes (as POST .../finish) right after applying this final round, in the same request.
 * `state_after_base` comes with `base_state_sha256`: the SHA-256 of the base's state.bin the source continued, which
 * must be the destination's (begin's answer names it): the base ID does not cover state.bin.
 */
/**
 * `units` (feature xz-units, non-final rounds): the segments are stored in these compression units,
 * whose bytes follow the header instead of the segments' (each segment then named by its content:
 * digest = rawDigest, size = rawSize, as in an xz manifest).
 */
export interface RoundHeader { round: number; final: boolean; finish?: boolean; state_after_base?: boolean; base_state_sha256?: string; segments: SegmentEntry[]; units?: CompressionUnit[] }

export interface FinishResponse {
  server: { id: string; name: string; status: string; ports: Record<string, string> };
  /** The destination's own timing of finish (optional: older destinations do not send it). */
  phases_ms?: Record<string, number>;
  /**
   * When the destination's QEMU resumed the VM (its RESUME event, ms since the epoch on the
   * destination host's clock; optional: older destinations do not send it).
   */
  resumed_at_ms?: number;
  /** SHA-256 of the RAM file before the load, only with CLOUDLET_HANDOFF_VERIFY_RAM=1 (tests). */
  ram_sha256?: string;
}

/**
 * Test hook (CLOUDLET_HANDOFF_VERIFY_RAM=1 on both daemons): the source hashes its paused RAM file
 * after the final round, the destination its RAM file before loading the device state; the report
 * carries both. Costs a read of the whole RAM inside the downtime: never set in production.
 */
export function verifyRamEnabled(): boolean { return process.env.CLOUDLET_HANDOFF_VERIFY_RAM === '1'; }

/**
 * The final device state as the continuation of the base's saved state when the destination names
 * state-after-base (default): the ROM blocks' pages (460 KB of the test guest's 678 KB state) then
 * go only where they differ from the base's, and the destination puts the base's before them.
 * CLOUDLET_HANDOFF_STATE_AFTER_BASE=0: the whole state, as before; on a destination, it names the
 * feature no more (and refuses a final round using it).
 */
export function stateAfterBaseEnabled(): boolean { return process.env.CLOUDLET_HANDOFF_STATE_AFTER_BASE !== '0'; }

/** A base whose state.bin is larger is never continued (its prefix would be parsed and held in the daemon). */
export const STATE_AFTER_BASE_MAX_BYTES = 64 << 20;

/** A base's saved state (state.bin) parsed, refused unless its bytes hash to `sha256` (the one both sides agreed at begin). */
export function readAgreedBaseState(file: string, sha256: string): SavedState {
  const bytes = fs.readFileSync(file);
  const got = crypto.createHash('sha256').update(bytes).digest('hex');
  if (got !== sha256) throw new CloudletError('Corrupt', `${file} hashes to ${got.slice(0, 12)}, the base's manifest says ${sha256.slice(0, 12)}`);
  return parseSavedState(bytes);
}

/** SHA-256 (hex) of a whole file, read in 8 MiB blocks. */
export function fileSha256(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try { for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n)); } finally { fs.closeSync(fd); }
  return h.digest('hex');
}

export function encodeRoundBody(header: RoundHeader, segments: Buffer[]): Buffer {
  return Buffer.concat(encodeRoundParts(header, segments));
}

/** encodeRoundBody's bytes as parts, in order (the segments not copied). */
export function encodeRoundParts(header: RoundHeader, segments: Buffer[]): Buffer[] {
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length, 0);
  return [Buffer.concat([len, h]), ...segments];
}
