/**
 * `cloudlet region register|list|remove`: an operator keeps a fleet's catalog. Each cloudlet is a
 * region of the one Keystone, holding its compute, image, reservation, container (and cloudlet)
 * endpoints. Admin credentials come from the usual OS_* variables (an openrc file) when
 * OS_AUTH_URL is set, else from a saved `cloudlet login` (--as).
 */
import type { Command } from 'commander';
import { CloudletClient, discoverAuthUrl } from '../../client';
import { describeCloudlet, listRegions, registerRegion, removeRegion } from '../../client/regions';
import { REGION_RE } from '../../cloudlet/config';
import { CloudletError } from '../../common/errors';
import { clientFor } from '../sessions';

async function adminClient(as?: string): Promise<CloudletClient> {
  const env = process.env;
  if (env.OS_AUTH_URL && !as) {
    if (!env.OS_USERNAME || !env.OS_PASSWORD || !env.OS_PROJECT_NAME) {
      throw new CloudletError('BadInput', 'OS_AUTH_URL is set but OS_USERNAME, OS_PASSWORD or OS_PROJECT_NAME is not');
    }
    return CloudletClient.login({ authUrl: await discoverAuthUrl(env.OS_AUTH_URL), username: env.OS_USERNAME, password: env.OS_PASSWORD, project: env.OS_PROJECT_NAME,
      userDomain: env.OS_USER_DOMAIN_NAME, projectDomain: env.OS_PROJECT_DOMAIN_NAME });
  }
  return clientFor(as);
}

function checkRegion(r: string): string {
  if (!REGION_RE.test(r)) throw new CloudletError('BadInput', `region name ${JSON.stringify(r)}: letters, digits, '.', '_' or '-', at most 64`);
  return r;
}

export function register(program: Command): void {
  const region = program.command('region').description('a fleet\'s catalog: each cloudlet a region of one Keystone (needs a Keystone admin)');

  region.command('register <region> <cloudlet-url>')
    .description('put a cloudlet\'s endpoints (from its root URL) into the catalog as REGION; again after its URLs change')
    .option('--as <session>', 'a saved login with the admin role (default: OS_* variables, else the current login)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, url: string, o: { as?: string; json?: boolean }) => {
      checkRegion(name);
      const cloudlet = await describeCloudlet(url);
      if (cloudlet.region && cloudlet.region !== name) {
        process.stderr.write(`note: the cloudlet at ${url} calls itself region ${cloudlet.region} (its config's region:); registering it as ${name}\n`);
      }
      const admin = await adminClient(o.as);
      if (cloudlet.services.identity && cloudlet.services.identity.replace(/\/+$/, '') !== admin.session.authUrl.replace(/\/+$/, '')) {
        process.stderr.write(`note: the cloudlet at ${url} validates tokens at ${cloudlet.services.identity}, not at ${admin.session.authUrl}; users of this catalog will be refused there\n`);
      }
      const changes = await registerRegion(admin, name, cloudlet.services);
      if (o.json) { process.stdout.write(JSON.stringify({ region: name, endpoints: changes }) + '\n'); return; }
      for (const c of changes.filter((x) => x.interface === 'public')) process.stdout.write(`${name}  ${c.type.padEnd(17)} ${c.url}  (${c.change})\n`);
    });

  region.command('list')
    .description('the regions of the catalog and their endpoints')
    .option('--as <session>', 'a saved login (default: OS_* variables, else the current login)')
    .option('--json', 'machine-readable output')
    .action(async (o: { as?: string; json?: boolean }) => {
      const list = await listRegions(await adminClient(o.as));
      if (o.json) { process.stdout.write(JSON.stringify(list, null, 2) + '\n'); return; }
      for (const r of list) {
        process.stdout.write(`${r.id}${r.description ? `  (${r.description})` : ''}\n`);
        for (const [t, u] of Object.entries(r.services).sort()) process.stdout.write(`  ${t.padEnd(17)} ${u}\n`);
      }
    });

  region.command('remove <region>')
    .description('take a cloudlet\'s endpoints and its region out of the catalog')
    .option('--as <session>', 'a saved login with the admin role (default: OS_* variables, else the current login)')
    .action(async (name: string, o: { as?: string }) => {
      const n = await removeRegion(await adminClient(o.as), checkRegion(name));
      process.stdout.write(`region ${name} removed (${n} endpoints)\n`);
    });
}
