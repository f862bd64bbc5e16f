/**
 * identity.register_region: a fleet cloudlet puts its own endpoints into the Keystone catalog as
 * region `region` when it starts, with its service user (which then needs the admin role), and
 * tries again in the background while Keystone cannot be reached. Without it an operator runs
 * `cloudlet region register REGION URL` once.
 */
import type { KeystoneIdentityConfig } from './config';
import { CloudletClient } from '../client/client';
import type { TlsTrust } from '../client/transport';
import { registerRegion } from '../client/regions';
import { describeError } from '../common/errors';
import type { Logger } from '../common/log';

export function registerSelf(cfg: KeystoneIdentityConfig, region: string, services: Record<string, string>, log: Logger, trust: TlsTrust = {}): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const attempt = async (n: number) => {
    if (stopped) return;
    try {
      const admin = await CloudletClient.login({ authUrl: cfg.auth_url, username: cfg.username, password: cfg.password, project: cfg.project,
        userDomain: cfg.user_domain, projectDomain: cfg.project_domain, tls: trust });
      const changes = await registerRegion(admin, region, services);
      const changed = changes.filter((c) => c.change !== 'unchanged').length;
      log.info(`region ${region}: ${changed ? `${changed} endpoint(s) registered or updated` : 'endpoints already registered'} in ${cfg.auth_url}`);
    } catch (e) {
      const delay = Math.min(60_000, 5_000 * 2 ** Math.min(n, 4));
      log.warn(`region ${region}: registering this cloudlet in the catalog of ${cfg.auth_url} failed (${describeError(e).split('\n')[0]}); trying again in ${delay / 1000} s`);
      if (!stopped) timer = setTimeout(() => void attempt(n + 1), delay).unref();
    }
  };
  void attempt(0);
  return { stop: () => { stopped = true; if (timer) clearTimeout(timer); } };
}
