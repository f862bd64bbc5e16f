/**
 * Keystone v3, the subset clients need: version discovery, password auth scoped to a project
 * (token in X-Subject-Token, catalog in the body), token validation and revocation, the caller's
 * projects. Domains are a fixed "Default".
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import type { IdentityStore, IssuedToken } from '../identityStore';
import { CloudletError } from '../../common/errors';

const DOMAIN = { id: 'default', name: 'Default' };

function base(req: FastifyRequest, ctx: DaemonContext, prefix: string): string {
  // Discovery links point where the client called us (the catalog URL may be another address).
  return req.host ? `${req.protocol}://${req.host}${prefix}` : ctx.publicUrl + prefix;
}

export function identityModule(store: IdentityStore, catalog: () => unknown[]): ApiModule {
  const prefix = '/identity';
  const version = (href: string) => ({
    id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: `${href}/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  });
  const tokenBody = (t: IssuedToken, withCatalog: boolean) => ({
    token: {
      methods: ['password'],
      user: { id: t.userId, name: t.userName, domain: DOMAIN, password_expires_at: null },
      project: { id: t.projectId, name: t.projectName, domain: DOMAIN },
      roles: t.roles.map((r) => ({ id: r, name: r })),
      is_domain: false,
      expires_at: t.expiresAt,
      issued_at: t.issuedAt,
      audit_ids: [t.auditId],
      ...(withCatalog ? { catalog: catalog() } : {}),
    },
  });
  const validated = (req: FastifyRequest) => {
    const h = req.headers['x-subject-token'];
    const t = store.validate(Array.isArray(h) ? h[0] : h);
    if (!t) throw new CloudletError('NotFound', 'Could not find token.');
    return t;
  };
  return {
    serviceType: 'identity',
    prefix,
    migrate: () => {},
    routes(app: FastifyInstance, ctx: DaemonContext) {
      app.get('/', async (req, reply) => reply.code(300).send({ versions: { values: [version(base(req, ctx, prefix))] } }));
      app.get('/v3', async (req) => ({ version: version(base(req, ctx, prefix)) }));
      app.get('/v3/', async (req) => ({ version: version(base(req, ctx, prefix)) }));

      app.post('/v3/auth/tokens', async (req, reply) => {
        const auth = (req.body as any)?.auth;
        const methods: unknown = auth?.identity?.methods;
        if (!Array.isArray(methods) || !methods.includes('password')) {
          throw new CloudletError('BadInput', 'only the password method is supported: auth.identity.methods must include "password"');
        }
        const user = auth.identity.password?.user;
        if (typeof user?.name !== 'string' || typeof user?.password !== 'string') {
          throw new CloudletError('BadInput', 'auth.identity.password.user needs name and password');
        }
        const scope = auth.scope?.project as { name?: string; id?: string } | undefined;
        const t = store.issue(user.name, user.password, scope);
        const noCatalog = (req.query as Record<string, string>).nocatalog !== undefined;
        return reply.code(201).header('x-subject-token', t.token).send(tokenBody(t, !noCatalog));
      });
      app.get('/v3/auth/tokens', async (req, reply) => {
        ctx.auth(req);
        const t = validated(req);
        const noCatalog = (req.query as Record<string, string>).nocatalog !== undefined;
        return reply.header('x-subject-token', t.token).send(tokenBody(t, !noCatalog));
      });
      app.delete('/v3/auth/tokens', async (req, reply) => {
        ctx.auth(req);
        store.revoke(validated(req).token);
        return reply.code(204).send();
      });
      app.get('/v3/auth/catalog', async (req) => { ctx.auth(req); return { catalog: catalog() }; });
      app.get('/v3/auth/projects', async (req) => {
        const a = ctx.auth(req);
        return { projects: [{ id: a.projectId, name: a.projectName, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id }] };
      });
      app.get('/v3/projects', async (req) => {
        const a = ctx.requireAdmin(req);
        void a;
        return { projects: store.projects().map((p) => ({ ...p, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id })) };
      });
    },
  };
}
