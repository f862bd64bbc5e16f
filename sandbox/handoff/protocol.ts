/**
 * The handoff wire protocol between two daemons (docs/api.md, "Handoff"). Routes live under the
 * destination's compute prefix and need a token of the destination's project:
 *   POST   /os-cloudlet-handoff                 begin: {handoff: {name, base_id, vm_config, ports, flavor_id, metadata}}
 *   PUT    /os-cloudlet-handoff/{sid}/rounds/{n} one round (octet-stream, see encodeRoundBody)
 *   POST   /os-cloudlet-handoff/{sid}/finish     build launch files, resume, create the server
 *   PUT    /os-cloudlet-handoff/{sid}/report     the source's measurements, kept in the server's metadata
 *   DELETE /os-cloudlet-handoff/{sid}            abort: drop everything the session received
 * A round body is: u32 BE header length, header JSON {round, final, segments: SegmentEntry[]},
 * then the compressed segments in header order. Segments use the overlay format unchanged.
 */
import { CloudletError } from '../common/errors';
import type { SegmentEntry } from '../overlay/format';

export const HANDOFF_PATH = '/os-cloudlet-handoff';

export interface BeginRequest {
  name: string;
  base_id: string;
  vm_config: Record<string, unknown> & { ramBytes: number };
  ports: number[];
  flavor_id?: string;
  metadata?: Record<string, string>;
}

export interface RoundHeader { round: number; final: boolean; segments: SegmentEntry[] }

export interface FinishResponse {
  server: { id: string; name: string; status: string; ports: Record<string, string> };
  /** The destination's own timing of finish (optional: older destinations do not send it). */
  phases_ms?: Record<string, number>;
}

export function encodeRoundBody(header: RoundHeader, segments: Buffer[]): Buffer {
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length, 0);
  return Buffer.concat([len, h, ...segments]);
}

/** Splits a round body; checks that the segment sizes add up to the body. */
export function decodeRoundBody(body: Buffer): { header: RoundHeader; segments: Map<string, Buffer> } {
  if (body.length < 4) throw new CloudletError('BadInput', 'handoff round body is shorter than its 4-byte header length');
  const hl = body.readUInt32BE(0);
  if (hl > body.length - 4 || hl > 16 << 20) throw new CloudletError('BadInput', `handoff round header length ${hl} does not fit a ${body.length}-byte body`);
  let header: RoundHeader;
  try { header = JSON.parse(body.subarray(4, 4 + hl).toString('utf8')); } catch (e) {
    throw new CloudletError('BadInput', `handoff round header is not JSON: ${(e as Error).message}`);
  }
  if (!header || !Number.isInteger(header.round) || !Array.isArray(header.segments)) throw new CloudletError('BadInput', 'handoff round header needs round and segments');
  const segments = new Map<string, Buffer>();
  let off = 4 + hl;
  for (const s of header.segments) {
    if (typeof s?.digest !== 'string' || !Number.isInteger(s.size) || s.size < 0 || off + s.size > body.length) {
      throw new CloudletError('BadInput', `handoff round ${header.round}: segment ${String(s?.digest)} does not fit the body`);
    }
    segments.set(s.digest, body.subarray(off, off + s.size));
    off += s.size;
  }
  if (off !== body.length) throw new CloudletError('BadInput', `handoff round ${header.round}: ${body.length - off} bytes after the last segment`);
  return { header, segments };
}
