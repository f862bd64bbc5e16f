/** Nova's version document and flavors (GET /, /flavors, /flavors/detail, /flavors/{id}, its extra specs). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DaemonContext } from '../context';
import { CloudletError } from '../../common/errors';
import { FLAVORS, findFlavor, type FlavorSpec } from '../servers/flavors';
import { computeSchemas as S } from './schemas/compute';

type Base = (req: FastifyRequest) => string;
type IdParams = { Params: { id: string } };

export function versionRoutes(app: FastifyInstance, base: Base): void {
  app.get('/', { schema: S.version }, async (req) => ({
    version: {
      id: 'v2.1', status: 'CURRENT', version: '2.1', min_version: '2.1', updated: '2013-07-23T11:33:21Z',
      links: [{ rel: 'self', href: `${base(req)}/` }],
      'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
    },
  }));
}

function flavorView(f: FlavorSpec, href: string) {
  return {
    ...f, 'OS-FLV-EXT-DATA:ephemeral': 0, 'OS-FLV-DISABLED:disabled': false, 'os-flavor-access:is_public': true, swap: '', rxtx_factor: 1.0,
    links: [{ rel: 'self', href: `${href}/flavors/${f.id}` }],
  };
}

export function flavorRoutes(app: FastifyInstance, ctx: DaemonContext, base: Base): void {
  app.get('/flavors', { schema: S.listFlavors }, async (req) => {
    ctx.auth(req);
    return { flavors: FLAVORS.map((f) => ({ id: f.id, name: f.name, links: flavorView(f, base(req)).links })) };
  });
  app.get('/flavors/detail', { schema: S.listFlavors }, async (req) => {
    ctx.auth(req);
    return { flavors: FLAVORS.map((f) => flavorView(f, base(req))) };
  });
  app.get<IdParams>('/flavors/:id', { schema: S.showFlavor }, async (req) => {
    ctx.auth(req);
    const f = findFlavor(req.params.id);
    if (!f) throw new CloudletError('NotFound', `Flavor ${req.params.id} could not be found.`);
    return { flavor: flavorView(f, base(req)) };
  });
  app.get<IdParams>('/flavors/:id/os-extra_specs', { schema: S.flavorExtraSpecs }, async (req) => {
    ctx.auth(req);
    return { extra_specs: {} };
  });
}
