/**
 * An overlay's manifest read from the head of a remote copy with ranged reads: the 16-byte
 * container header says how long the manifest is, and only those bytes are asked for. The one
 * place that reads the header of an overlay that is not a local file: the daemon's overlay_url
 * check and the client's overlay view (sandbox/client) both come here.
 */
import { CloudletError } from '../common/errors';
import { checkContainerVersion, CONTAINER_HEADER_SIZE, decodeContainerHead, type OverlayManifest } from './format';
import { parseManifest } from './overlayReader';

/** What the first read should ask for: enough for the header and a typical manifest. */
export const HEAD_READ_BYTES = 64 * 1024;

/**
 * `head`: the first bytes of the overlay (up to HEAD_READ_BYTES); `readMore(start, endInclusive)`
 * returns at most the bytes asked for. `maxBytes` caps header + manifest (413 beyond it).
 */
export async function manifestFromHead(head: Buffer, readMore: (start: number, endInclusive: number) => Promise<Buffer>,
  o: { where: string; maxBytes: number }): Promise<{ manifest: OverlayManifest; overlayId: string }> {
  if (head.length < CONTAINER_HEADER_SIZE) throw new CloudletError('Corrupt', `overlay at ${o.where} is too short to be an overlay (${head.length} bytes)`);
  const { version, manifestLength } = decodeContainerHead(head.subarray(0, CONTAINER_HEADER_SIZE));
  const need = CONTAINER_HEADER_SIZE + manifestLength;
  if (need > o.maxBytes) throw new CloudletError('BadInput', `overlay at ${o.where} declares a manifest of ${need} bytes, over this cloudlet's cap of ${o.maxBytes} bytes`, { status: 413 });
  let buf = head.subarray(0, need);
  if (buf.length < need) buf = Buffer.concat([buf, (await readMore(buf.length, need - 1)).subarray(0, need - buf.length)]);
  const parsed = parseManifest(buf.subarray(CONTAINER_HEADER_SIZE, need));
  checkContainerVersion(version, parsed.manifest, `overlay at ${o.where}`);
  return parsed;
}
