/**
 * manifest.json of a base bundle, and the base ID.
 *
 * Base ID = hex SHA-256 of the UTF-8 text
 *   "cloudlet-base-id/1\ndisk <hex sha256 of disk.digests>\nram <hex sha256 of ram.digests>\n"
 * i.e. it names exactly the disk and RAM contents chunk by chunk (what overlays are computed
 * against). The device state, kernel and manifest are covered by the sha256 in `files`.
 */
import * as crypto from 'crypto';
import { CloudletError } from '../common/errors';
import type { VmConfig } from '../qemu/vmconfig';

export const BASE_FORMAT = 'cloudlet-base';
export const BASE_FORMAT_VERSION = 1;

/** Files of a bundle; kernel and initrd only for kernel-booted bases. */
export const BUNDLE_FILES = ['disk.raw', 'ram.raw', 'state.bin', 'disk.digests', 'ram.digests', 'kernel', 'initrd'] as const;
export type BundleFileName = typeof BUNDLE_FILES[number];

export interface FileEntry { bytes: number; sha256: string }

export interface BaseManifest {
  format: typeof BASE_FORMAT;
  formatVersion: number;
  baseId: string;
  name: string;
  createdAt: string;
  vm: VmConfig;
  qemu: { version: string; accel: 'kvm' | 'tcg' };
  chunkSize: 4096;
  files: Partial<Record<BundleFileName, FileEntry>>;
  /** Guest TCP ports the base declares (forwarded to 127.0.0.1 on resume). */
  ports: number[];
  readiness: { consoleMarker?: string; agent: boolean; timeoutMs: number; readyAfterMs?: number };
  /** Facts read from the guest just before it was paused (boot id, uptime, counter), when it has an agent. */
  guest?: { bootId?: string; uptime?: number; counter?: number };
  /** Where the base came from (test guest, Debian suite and packages, image file): for people, not checked. */
  origin?: Record<string, unknown>;
}

export function computeBaseId(diskDigestsSha256: string, ramDigestsSha256: string): string {
  return crypto.createHash('sha256')
    .update(`cloudlet-base-id/1\ndisk ${diskDigestsSha256}\nram ${ramDigestsSha256}\n`)
    .digest('hex');
}

export function parseManifest(text: string, where: string): BaseManifest {
  let m: BaseManifest;
  try { m = JSON.parse(text) as BaseManifest; } catch (e) {
    throw new CloudletError('Corrupt', `${where}: manifest.json is not valid JSON`, { cause: e });
  }
  if (m.format !== BASE_FORMAT) throw new CloudletError('BadInput', `${where}: not a cloudlet base bundle (format ${JSON.stringify(m.format)})`);
  if (m.formatVersion !== BASE_FORMAT_VERSION) {
    throw new CloudletError('Mismatch', `${where}: base format version ${m.formatVersion} is not supported (this tool reads ${BASE_FORMAT_VERSION})`);
  }
  for (const f of ['disk.raw', 'ram.raw', 'state.bin', 'disk.digests', 'ram.digests'] as const) {
    const e = m.files?.[f];
    if (!e || typeof e.bytes !== 'number' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw new CloudletError('Corrupt', `${where}: manifest.json lacks a valid entry for ${f}`);
  }
  if (m.vm?.kernel && (!m.files.kernel || !m.files.initrd)) throw new CloudletError('Corrupt', `${where}: kernel-booted base without kernel/initrd entries`);
  if (!m.vm || m.vm.ramBytes % 4096 !== 0 || m.files['ram.raw']!.bytes !== m.vm.ramBytes) {
    throw new CloudletError('Corrupt', `${where}: RAM size in manifest.json is inconsistent`);
  }
  const id = computeBaseId(m.files['disk.digests']!.sha256, m.files['ram.digests']!.sha256);
  if (id !== m.baseId) throw new CloudletError('Corrupt', `${where}: base ID ${m.baseId} does not match its digests (${id})`);
  return m;
}
