/**
 * Registry credentials in Docker's own file, so `docker login` and `cloudlet registry login` share
 * them: $DOCKER_CONFIG/config.json (default ~/.docker/config.json), `auths["host:port"].auth` =
 * base64("user:password"). Other keys of the file are kept untouched when we write.
 * Secrets never leave this module except inside an Authorization header; Credentials has a
 * toJSON/inspect that hides the password so a stray log line cannot print it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import { CloudletError } from '../common/errors';

export class Credentials {
  readonly username: string;
  readonly #password: string;
  constructor(username: string, password: string) {
    this.username = username;
    this.#password = password;
  }
  /** The value of an `Authorization: Basic` header. */
  basicHeader(): string {
    return 'Basic ' + Buffer.from(`${this.username}:${this.#password}`).toString('base64');
  }
  toJSON(): unknown {
    return { username: this.username, password: '***' };
  }
  [inspect.custom](): string {
    return `Credentials(${this.username}, ***)`;
  }
  /** For the `cloudlet:registry_auth` field of a server create only (sent to the cloudlet that pulls). */
  toRequestAuth(): { username: string; password: string } {
    return { username: this.username, password: this.#password };
  }
  /** For writing the Docker config file only. */
  encodeForDockerConfig(): string {
    return Buffer.from(`${this.username}:${this.#password}`).toString('base64');
  }
}

export function dockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

function readConfig(file: string): DockerConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
  try {
    const c = JSON.parse(text) as DockerConfig;
    return c && typeof c === 'object' ? c : {};
  } catch {
    throw new CloudletError('BadInput', `the Docker credentials file ${file} is not valid JSON`);
  }
}

/** Keys in `auths` may be written "host", "https://host", "https://host/v1/": compare hosts. */
function hostOfKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
}

export function lookupCredentials(registry: string, file = dockerConfigPath()): Credentials | undefined {
  const auths = readConfig(file).auths ?? {};
  const want = registry.toLowerCase();
  for (const [key, entry] of Object.entries(auths)) {
    if (hostOfKey(key) !== want || !entry) continue;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return new Credentials(decoded.slice(0, colon), decoded.slice(colon + 1));
    }
    if (entry.username && entry.password) return new Credentials(entry.username, entry.password);
  }
  return undefined;
}

/** Writes atomically with mode 0600 (the file holds passwords). */
function writeConfig(file: string, config: DockerConfig): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(config, null, '\t') + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function storeCredentials(registry: string, creds: Credentials, file = dockerConfigPath()): void {
  const config = readConfig(file);
  const auths = { ...(config.auths ?? {}) };
  for (const key of Object.keys(auths)) if (hostOfKey(key) === registry.toLowerCase()) delete auths[key];
  auths[registry.toLowerCase()] = { auth: creds.encodeForDockerConfig() };
  writeConfig(file, { ...config, auths });
}

export function removeCredentials(registry: string, file = dockerConfigPath()): boolean {
  const config = readConfig(file);
  const auths = { ...(config.auths ?? {}) };
  let removed = false;
  for (const key of Object.keys(auths)) {
    if (hostOfKey(key) === registry.toLowerCase()) { delete auths[key]; removed = true; }
  }
  if (removed) writeConfig(file, { ...config, auths });
  return removed;
}
