/**
 * Connection settings shared by the CLI and the daemon: a custom CA from --ca or CLOUDLET_REGISTRY_CA
 * (a PEM file), plain HTTP from --plain-http or CLOUDLET_REGISTRY_PLAIN_HTTP=1 (never silently for
 * non-loopback hosts otherwise).
 */
import { readCaFile as readPemFile } from '../client/transport';

export function readCaFile(file: string | undefined = process.env.CLOUDLET_REGISTRY_CA || undefined): string | undefined {
  return file ? readPemFile(file) : undefined;
}

export function plainHttpSetting(flag?: boolean): boolean | 'auto' {
  if (flag) return true;
  return process.env.CLOUDLET_REGISTRY_PLAIN_HTTP === '1' ? true : 'auto';
}
