/**
 * Validation of Zun container create bodies and the `command` strings of create and execute.
 */
import { CloudletError } from '../common/errors';

/** Splits a command line like a POSIX shell does for words and quotes (no expansion). */
export function splitCommand(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let word = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && (text[i + 1] === '"' || text[i + 1] === '\\')) cur += text[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") { quote = ch; word = true; }
    else if (ch === '\\' && i + 1 < text.length) { cur += text[++i]; word = true; }
    else if (/\s/.test(ch)) { if (word) out.push(cur); cur = ''; word = false; }
    else { cur += ch; word = true; }
  }
  if (quote) throw new CloudletError('BadInput', `unbalanced ${quote} in command: ${text}`);
  if (word) out.push(cur);
  return out;
}

function argv(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string') return splitCommand(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new CloudletError('BadInput', `${field} must be a string or a list of strings`);
}

function stringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new CloudletError('BadInput', `${field} must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean') throw new CloudletError('BadInput', `${field}.${k} must be a string`);
    out[k] = String(x);
  }
  return out;
}

export interface ContainerCreateRequest {
  name?: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  environment: Record<string, string>;
  labels: Record<string, string>;
  workdir?: string;
  exposedPorts: Record<string, Record<string, never>>;
  reservationId?: string;
  device?: string;
  network: 'host' | 'none';
  imagePullPolicy: 'always' | 'ifnotpresent' | 'never';
  run: boolean;
}

const PORT_RE = /^\d{1,5}(\/(tcp|udp|sctp))?$/;

export function parseContainerCreate(body: unknown, runQuery: boolean): ContainerCreateRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new CloudletError('BadInput', 'body must be a JSON object with image and hints.reservation');
  const b = body as Record<string, unknown>;
  if (typeof b.image !== 'string' || b.image.trim() === '') throw new CloudletError('BadInput', 'image is required');
  if (b.name !== undefined && (typeof b.name !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/.test(b.name))) {
    throw new CloudletError('BadInput', `name '${String(b.name)}' may hold letters, digits, '_', '.' and '-' only`);
  }
  let hints = b.hints ?? {};
  if (typeof hints === 'string') {
    try { hints = JSON.parse(hints); } catch { throw new CloudletError('BadInput', 'hints must be an object'); }
  }
  if (!hints || typeof hints !== 'object' || Array.isArray(hints)) throw new CloudletError('BadInput', 'hints must be an object');
  const h = hints as Record<string, unknown>;
  const exposed: Record<string, Record<string, never>> = {};
  if (b.exposed_ports !== undefined && b.exposed_ports !== null) {
    if (typeof b.exposed_ports !== 'object' || Array.isArray(b.exposed_ports)) throw new CloudletError('BadInput', 'exposed_ports must be an object like {"80/tcp": {}}');
    for (const k of Object.keys(b.exposed_ports)) {
      if (!PORT_RE.test(k)) throw new CloudletError('BadInput', `exposed_ports: '${k}' is not PORT/PROTOCOL`);
      exposed[k.includes('/') ? k : `${k}/tcp`] = {};
    }
  }
  const network = h.network ?? 'host';
  if (network !== 'host' && network !== 'none') throw new CloudletError('BadInput', `hints.network '${String(network)}' must be "host" or "none"`);
  const policy = b.image_pull_policy ?? 'ifnotpresent';
  if (policy !== 'always' && policy !== 'ifnotpresent' && policy !== 'never') {
    throw new CloudletError('BadInput', 'image_pull_policy must be always, ifnotpresent or never');
  }
  return {
    name: b.name as string | undefined,
    image: b.image,
    command: argv(b.command, 'command'),
    entrypoint: argv(b.entrypoint, 'entrypoint'),
    environment: stringMap(b.environment, 'environment'),
    labels: stringMap(b.labels, 'labels'),
    workdir: typeof b.workdir === 'string' && b.workdir ? b.workdir : undefined,
    exposedPorts: exposed,
    reservationId: typeof h.reservation === 'string' && h.reservation ? h.reservation : undefined,
    device: typeof h.device === 'string' && h.device ? h.device : undefined,
    network,
    imagePullPolicy: policy,
    run: runQuery || b.run === true,
  };
}
