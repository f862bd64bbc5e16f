/**
 * Where a daemon's callers come from. Two providers sit behind the daemon's one auth hook:
 * - embedded: the daemon is its own Keystone (users in its config, tokens in its SQLite); the
 *   default for the local sandbox and a single cloudlet;
 * - keystone: an external Keystone v3 validates every token, the way keystonemiddleware does
 *   (keystoneIdentity.ts); the daemon is then one region of a fleet.
 * Validation is asynchronous (an external Keystone is a network call), so the daemon resolves the
 * caller in an onRequest hook and `ctx.auth(req)` only reads what the hook found (requestAuth.ts).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { AuthContext, IdentityProvider } from './context';
import type { DaemonConfig } from './config';
import { IdentityStore, migrateIdentity } from './identityStore';
import { KeystoneIdentity } from './keystoneIdentity';
import type { Logger } from '../common/log';
import { transportFetch, type TlsTrust } from '../client/transport';

export type { IdentityProvider } from './context';

/** The daemon's own Keystone: users and projects from its config, tokens in its database (its /identity routes: api/identity.ts). */
export class EmbeddedIdentity implements IdentityProvider {
  readonly kind = 'embedded';
  readonly store: IdentityStore;
  constructor(db: BetterSqlite3.Database, config: DaemonConfig) {
    migrateIdentity(db);
    this.store = new IdentityStore(db, config.token_ttl_seconds);
    this.store.sync(config);
  }
  async validate(token: string): Promise<AuthContext | undefined> { return this.store.validate(token); }
}

/** `trust`: how an external Keystone's certificate is verified (the daemon's peer trust). */
export function createIdentityProvider(db: BetterSqlite3.Database, config: DaemonConfig, log: Logger, trust: TlsTrust = {}): IdentityProvider {
  const k = config.identity;
  if (k?.provider === 'keystone') return new KeystoneIdentity(k, log, { fetch: ((url: string, init?: RequestInit) => transportFetch(url, init, trust)) as typeof fetch });
  return new EmbeddedIdentity(db, config);
}
