/**
 * A real daemon core (Fastify, SQLite, Keystone auth, jobs) in this process on 127.0.0.1, with
 * the API modules a unit test gives (e.g. compute over a fake VmBackend): seconds, no QEMU.
 * `inject` goes through the whole request path (schemas, auth, error bodies) without a socket.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { startDaemon, type Daemon } from '../../../sandbox/cloudlet/daemon';
import type { ApiModule } from '../../../sandbox/cloudlet/context';
import { DEFAULTS, type DaemonConfig } from '../../../sandbox/cloudlet/config';
import { CloudletClient } from '../../../sandbox/client';
import { createLogger } from '../../../sandbox/common/log';

export const UNIT_USERS = { admin: 'admin-secret', alice: 'alice-secret', bob: 'bob-secret' } as const;
type User = keyof typeof UNIT_USERS;
const PROJECT: Record<User, string> = { admin: 'admin', alice: 'demo', bob: 'other' };

export interface UnitDaemon {
  daemon: Daemon;
  dataDir: string;
  /** What the daemon logged. */
  logs: string[];
  /** A token of `user` (scoped to the user's project). */
  token(user: User): Promise<string>;
  /** The real client, logged in as `user`. */
  client(user: User): Promise<CloudletClient>;
  /** A request with `user`'s token (none when user is undefined). */
  inject(user: User | undefined, o: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/**
 * `modules` undefined: every built-in module (a real VM backend over the empty data folder).
 * `o.dataDir`: a data folder a daemon used before (a restart); removed by close like a new one.
 */
export async function startUnitDaemon(modules: ApiModule[] | undefined, config: Partial<DaemonConfig> = {}, o: { dataDir?: string } = {}): Promise<UnitDaemon> {
  const dataDir = o.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-unit-'));
  const logs: string[] = [];
  const daemon = await startDaemon({
    host: '127.0.0.1', port: 0, dataDir, modules,
    config: {
      ...DEFAULTS, projects: ['admin', 'demo', 'other'],
      users: [
        { name: 'admin', password: UNIT_USERS.admin, roles: { admin: ['admin', 'member'] } },
        { name: 'alice', password: UNIT_USERS.alice, roles: { demo: ['member'] } },
        { name: 'bob', password: UNIT_USERS.bob, roles: { other: ['member'] } },
      ],
      ...config,
    },
    log: createLogger('unit', (line) => logs.push(line)),
  });
  const tokens = new Map<User, string>();
  const token = async (user: User) => {
    let t = tokens.get(user);
    if (!t) {
      const res = await daemon.app.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: { auth: {
        identity: { methods: ['password'], password: { user: { name: user, domain: { name: 'Default' }, password: UNIT_USERS[user] } } },
        scope: { project: { name: PROJECT[user], domain: { name: 'Default' } } },
      } } });
      t = res.headers['x-subject-token'] as string;
      if (!t) throw new Error(`login of ${user}: ${res.statusCode} ${res.body}`);
      tokens.set(user, t);
    }
    return t;
  };
  return {
    daemon, dataDir, logs, token,
    client: (user) => CloudletClient.login({ authUrl: `${daemon.url}/identity`, username: user, password: UNIT_USERS[user], project: PROJECT[user] }),
    inject: async (user, o) => daemon.app.inject({ ...o, headers: { ...(user ? { 'x-auth-token': await token(user) } : {}), ...(o.headers ?? {}) } }),
    close: async () => { await daemon.close(); fs.rmSync(dataDir, { recursive: true, force: true }); },
  };
}
