/**
 * Pure parsers of the compute API's request bodies: what a route hands to the ServerLifecycle is
 * checked and typed here, with Nova's wording for what is wrong. No state, no I/O.
 */
import { CloudletError } from '../../common/errors';
import { normalizeFingerprint } from '../../client/transport';
import { findFlavor } from './flavors';
import { isTcpPort } from '../../common/tcpPort';
import { Credentials } from '../../registry/credentials';

export interface ServerCreateRequest {
  name: string;
  metadata: Record<string, string>;
  flavorId: string;
  /** Guest TCP ports to forward (metadata.ports). */
  ports: number[];
  /** imageRef as given (an id or a Glance URL), '' when absent. */
  imageRef: string;
  /** The image id in imageRef. */
  imageId: string;
  /** metadata.overlay_url: a synthesis instead of a base resume. */
  overlayUrl?: string;
  /**
   * `cloudlet:registry_auth`: the caller's own login to the registry of an oci:// overlay_url, used
   * for this pull only (never stored, logged or put in the server or its job; Credentials hides the
   * password from JSON and inspect).
   */
  registryAuth?: Credentials;
}

export interface HandoffAction { handoffUrl: string; destToken: string; destVmName?: string; destFingerprint?: string }

export type ServerAction =
  | { action: 'pause' | 'unpause' | 'os-stop' | 'os-start' }
  | { action: 'reboot'; hard: boolean }
  | { action: 'os-getConsoleOutput'; length?: number }
  | { action: 'cloudlet-overlay-finish'; overlayName?: string }
  | { action: 'cloudlet-handoff'; handoff: HandoffAction };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A comma-separated list of guest TCP ports ('' or absent: none). */
export function parsePorts(v: string | undefined): number[] {
  if (v === undefined || v === '') return [];
  const items = v.split(',').map((s) => s.trim());
  const ports = items.map((s) => (/^\d{1,5}$/.test(s) ? Number(s) : NaN));
  if (ports.some((p) => !isTcpPort(p))) throw new CloudletError('BadInput', `metadata.ports must be a comma-separated list of guest TCP ports, got ${v}`);
  return ports;
}

/** handoff_* metadata is written by the daemon only (a handoff's session and outcome); clients may read it. */
export function isDaemonKey(key: string): boolean { return key.startsWith('handoff_'); }

export function refuseDaemonKeys(keys: string[]): void {
  const bad = keys.find(isDaemonKey);
  if (bad) throw new CloudletError('Forbidden', `Metadata item ${bad} is set by the cloudlet (handoff_* keys are read-only)`);
}

function parseMetadata(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v)) throw new CloudletError('BadInput', 'Invalid input for field/attribute metadata: an object of string values is required');
  const metadata: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new CloudletError('BadInput', `Invalid input for field/attribute metadata: value of ${k} must be a string`);
    metadata[k] = x;
  }
  refuseDaemonKeys(Object.keys(metadata));
  return metadata;
}

/** The server create's top-level key (next to `server`, like Nova's scheduler hints) with the caller's registry login. */
export const REGISTRY_AUTH_KEY = 'cloudlet:registry_auth';

/** {username, password} (the schema checked types and sizes), only with an oci:// overlay_url: it is for that registry alone. */
function parseRegistryAuth(v: unknown, overlayUrl: string | undefined): Credentials | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || typeof v.username !== 'string' || !v.username || typeof v.password !== 'string' || !v.password) {
    throw new CloudletError('BadInput', `${REGISTRY_AUTH_KEY} must be {"username": ..., "password": ...}`);
  }
  if (v.username.includes(':')) throw new CloudletError('BadInput', `${REGISTRY_AUTH_KEY}: a username cannot contain ':' (Basic auth)`);
  if (!overlayUrl || !/^oci:\/\//i.test(overlayUrl)) {
    throw new CloudletError('BadInput', `${REGISTRY_AUTH_KEY} is only for a synthesis from an oci:// metadata.overlay_url (its registry's login)`);
  }
  return new Credentials(v.username, v.password);
}

/** POST /servers: {"server": {name, flavorRef?, imageRef?, metadata?}}. */
export function parseServerCreate(body: unknown): ServerCreateRequest {
  const s = isObject(body) ? body.server : undefined;
  if (!isObject(s)) throw new CloudletError('BadInput', "Invalid input for field/attribute server. Value: missing 'server' object");
  if (typeof s.name !== 'string' || !s.name.trim() || s.name.length > 255) throw new CloudletError('BadInput', 'Invalid input for field/attribute name: a non-empty name of at most 255 characters is required');
  const metadata = parseMetadata(s.metadata);
  const flavorId = String(s.flavorRef ?? '1').replace(/^.*\/flavors\//, '');
  if (!findFlavor(flavorId)) throw new CloudletError('BadInput', `Flavor ${flavorId} could not be found.`);
  const imageRef = s.imageRef === undefined || s.imageRef === null ? '' : String(s.imageRef);
  const registryAuth = parseRegistryAuth((body as Record<string, unknown>)[REGISTRY_AUTH_KEY], metadata.overlay_url);
  return {
    name: s.name, metadata, flavorId, ports: parsePorts(metadata.ports), imageRef, imageId: imageRef.replace(/^.*\/images\//, ''),
    ...(metadata.overlay_url !== undefined ? { overlayUrl: metadata.overlay_url } : {}),
    ...(registryAuth ? { registryAuth } : {}),
  };
}

function parseHandoff(p: unknown): HandoffAction {
  const h = isObject(p) ? p : {};
  if (typeof h.handoff_url !== 'string' || !/^https?:\/\//.test(h.handoff_url)) throw new CloudletError('BadInput', 'cloudlet-handoff needs handoff_url: the destination compute endpoint (http or https)');
  if (typeof h.dest_token !== 'string' || !h.dest_token) throw new CloudletError('BadInput', 'cloudlet-handoff needs dest_token: a token valid at the destination');
  if (h.dest_tls_fingerprint !== undefined && typeof h.dest_tls_fingerprint !== 'string') throw new CloudletError('BadInput', 'cloudlet-handoff: dest_tls_fingerprint must be a SHA-256 fingerprint string');
  return {
    handoffUrl: h.handoff_url, destToken: h.dest_token,
    ...(typeof h.dest_vmname === 'string' ? { destVmName: h.dest_vmname } : {}),
    ...(h.dest_tls_fingerprint !== undefined ? { destFingerprint: normalizeFingerprint(h.dest_tls_fingerprint) } : {}),
  };
}

/** POST /servers/{id}/action: a body with exactly one key, the action's name. */
export function parseServerAction(body: unknown): ServerAction {
  const keys = isObject(body) ? Object.keys(body) : [];
  if (keys.length !== 1) throw new CloudletError('BadInput', 'an action body has exactly one key, the action name');
  const action = keys[0];
  const arg = (body as Record<string, unknown>)[action];
  switch (action) {
    case 'pause': case 'unpause': case 'os-stop': case 'os-start':
      return { action };
    case 'reboot': {
      const type = isObject(arg) ? arg.type : undefined;
      if (type !== 'SOFT' && type !== 'HARD') throw new CloudletError('BadInput', "Invalid input for field/attribute type. Value: reboot needs type SOFT or HARD");
      return { action, hard: type === 'HARD' };
    }
    case 'os-getConsoleOutput': {
      // novaclient sends length as a number or null (all), some clients as a string of digits.
      const length = isObject(arg) ? arg.length : undefined;
      if (length === undefined || length === null || length === -1 || length === '-1') return { action };
      const n = typeof length === 'string' && /^\d{1,9}$/.test(length) ? Number(length) : length;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new CloudletError('BadInput', 'Invalid input for field/attribute length: a whole number of lines, or null for all');
      return { action, length: n };
    }
    case 'cloudlet-overlay-finish': {
      const name = isObject(arg) ? arg['overlay-name'] : undefined;
      if (name !== undefined && (typeof name !== 'string' || !name.trim() || name.length > 255)) throw new CloudletError('BadInput', 'cloudlet-overlay-finish: overlay-name must be a non-empty string of at most 255 characters');
      return { action, ...(name !== undefined ? { overlayName: name } : {}) };
    }
    case 'cloudlet-handoff':
      return { action, handoff: parseHandoff(arg) };
    default:
      throw new CloudletError('BadInput', `action ${action} is not supported here`);
  }
}
