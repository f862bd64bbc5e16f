/**
 * Connection settings shared by the CLI and the daemon: a custom CA from --ca or CLOUDLET_REGISTRY_CA
 * (a PEM file), plain HTTP from --plain-http or CLOUDLET_REGISTRY_PLAIN_HTTP=1 (never silently for
 * non-loopback hosts otherwise).
 */
import * as fs from 'fs';
import { CloudletError } from '../common/errors';

export function readCaFile(file: string | undefined = process.env.CLOUDLET_REGISTRY_CA || undefined): string | undefined {
  if (!file) return undefined;
  try {
    const pem = fs.readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return pem;
  } catch (e) {
    throw new CloudletError('BadInput', `cannot use ${file} as a CA certificate: ${(e as Error).message}`);
  }
}

export function plainHttpSetting(flag?: boolean): boolean | 'auto' {
  if (flag) return true;
  return process.env.CLOUDLET_REGISTRY_PLAIN_HTTP === '1' ? true : 'auto';
}
