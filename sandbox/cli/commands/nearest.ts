/**
 * `cloudlet synthesize --nearest OVERLAY`: VM synthesis on the nearest cloudlet that holds the
 * overlay's base (sandbox/client/nearest.ts: several round-trip probes each, median, ties and
 * unreachable ones shown). The candidates are the cloudlets of one saved login (--cloudlet: a
 * fleet's regions) or, without it, of every saved login whose token is still valid.
 */
import * as fs from 'fs';
import { CloudletClient, type Server } from '../../client';
import { findNearest, nearestTable, type Candidate } from '../../client/nearest';
import { CloudletError, describeError } from '../../common/errors';
import { HEAD_READ_BYTES, manifestFromHead } from '../../overlay/manifestHead';
import { fetchOverlayManifest } from '../../cloudlet/overlayFetch';
import { openOverlayFromOci, plainHttpSetting, readCaFile } from '../../registry';
import { clientFor, cloudletNames, loadSessions } from '../sessions';
import { synthesizeOnCloudlet } from './remote';
import type { RegistryAuthMode } from '../../registry/synthesisLogin';

const MANIFEST_CAP = 64 * 1024 * 1024;

/** The base ID an overlay (local file, http(s) URL or oci:// reference) was made against. */
export async function overlayBaseId(overlay: string): Promise<string> {
  if (/^oci:\/\//.test(overlay)) {
    const o = await openOverlayFromOci(overlay, { ca: readCaFile(), plainHttp: plainHttpSetting() });
    await o.close();
    return o.baseId;
  }
  if (/^https?:\/\//.test(overlay)) return (await fetchOverlayManifest(overlay, {}, MANIFEST_CAP)).manifest.baseId;
  if (!fs.existsSync(overlay)) throw new CloudletError('NotFound', `overlay file ${overlay} not found`);
  const fd = fs.openSync(overlay, 'r');
  try {
    const read = (start: number, len: number) => { const b = Buffer.alloc(len); return b.subarray(0, fs.readSync(fd, b, 0, len, start)); };
    const { manifest } = await manifestFromHead(read(0, HEAD_READ_BYTES), async (s, e) => read(s, e - s + 1), { where: overlay, maxBytes: MANIFEST_CAP });
    return manifest.baseId;
  } finally { fs.closeSync(fd); }
}

async function candidates(login?: string): Promise<Candidate[]> {
  const refs = login ? [login] : Object.values(loadSessions().cloudlets).filter((s) => Date.parse(s.expiresAt) > Date.now()).map((s) => s.name);
  if (!refs.length) throw new CloudletError('BadInput', 'not logged in to any cloudlet', { hint: 'cloudlet login KEYSTONE-OR-CLOUDLET-URL --user NAME --project NAME' });
  const out: Candidate[] = [];
  const seen = new Set<string>();
  for (const ref of refs) {
    let c: CloudletClient;
    try { c = await clientFor(ref); } catch (e) {
      if (login) throw e;
      process.stderr.write(`skipping ${ref}: ${describeError(e).split('\n')[0]}\n`);
      continue;
    }
    const regions = c.regions();
    for (const name of ref.includes('/') ? [ref] : cloudletNames(ref, c)) {
      const rc = !ref.includes('/') && regions.length > 1 ? c.inRegion(name.slice(ref.length + 1)) : c;
      // The same cloudlet under two logins is measured once.
      const key = (() => { try { return rc.endpoint('compute'); } catch { return name; } })();
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ name, client: rc });
    }
  }
  return out;
}

export async function synthesizeOnNearest(overlay: string, o: { cloudlet?: string; name?: string; ports?: string; json?: boolean; probes?: number; registryAuth?: RegistryAuthMode }): Promise<Server> {
  const baseId = await overlayBaseId(overlay);
  const result = await findNearest(await candidates(o.cloudlet), baseId, { probes: o.probes, onPhase: (m) => process.stderr.write(`${m}\n`) });
  if (!o.json) process.stdout.write(nearestTable(result));
  if (!result.nearest) {
    if (o.json) process.stdout.write(JSON.stringify({ nearest: null, rows: result.rows }) + '\n');
    throw new CloudletError('NotFound', `no cloudlet that holds base ${baseId.slice(0, 12)} answered`, { hint: 'import the base on a cloudlet (cloudlet base export / image upload), or check the unreachable ones above' });
  }
  if (!o.json) process.stdout.write(`synthesizing on ${result.nearest}\n`);
  const server = await synthesizeOnCloudlet(result.nearest, overlay, { name: o.name, ports: o.ports, json: false, quiet: o.json, registryAuth: o.registryAuth });
  if (o.json) process.stdout.write(JSON.stringify({ nearest: result.nearest, rows: result.rows, server }) + '\n');
  return server;
}
