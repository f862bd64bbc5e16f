/**
 * Keystone v3, the subset clients need: version discovery, password auth scoped to a project
 * (token in X-Subject-Token, catalog in the body), token validation and revocation, the caller's
 * projects. Domains are a fixed "Default". Every login attempt is audit-logged with its source
 * address; a token is read or revoked through X-Subject-Token only by its own user or an admin or
 * service role, as Keystone's policy has it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import { LoginThrottledError, type IdentityStore, type IssuedToken } from '../identityStore';
import { CloudletError } from '../../common/errors';
import { identitySchemas as S } from './schemas/identity';

const DOMAIN = { id: 'default', name: 'Default' };

/** Where discovery links point: the catalog's identity URL, never the request's Host header. */
function base(ctx: DaemonContext): string {
  return ctx.serviceUrl('identity');
}

/** A client-chosen name in a log line: quoted, control characters escaped, cut short. */
const logged = (name: string) => JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}...` : name);

type Catalog = () => unknown[];

function versionDocument(href: string) {
  return {
    id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: `${href}/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  };
}

/** A token as Keystone shows it (with the catalog unless the client asked for nocatalog). */
function tokenBody(t: IssuedToken, catalog: Catalog | undefined) {
  return {
    token: {
      methods: ['password'],
      user: { id: t.userId, name: t.userName, domain: DOMAIN, password_expires_at: null },
      project: { id: t.projectId, name: t.projectName, domain: DOMAIN },
      roles: t.roles.map((r) => ({ id: r, name: r })),
      is_domain: false,
      expires_at: t.expiresAt,
      issued_at: t.issuedAt,
      audit_ids: [t.auditId],
      ...(catalog ? { catalog: catalog() } : {}),
    },
  };
}

/** The catalog if the query does not say nocatalog. */
const catalogUnless = (req: FastifyRequest, catalog: Catalog) => ((req.query as Record<string, string>).nocatalog !== undefined ? undefined : catalog);

export function identityModule(store: IdentityStore, catalog: Catalog): ApiModule {
  return {
    serviceType: 'identity',
    prefix: '/identity',
    migrate: () => {},
    routes(app: FastifyInstance, ctx: DaemonContext) {
      app.get('/', { schema: S.versions }, async (_req, reply) => reply.code(300).send({ versions: { values: [versionDocument(base(ctx))] } }));
      app.get('/v3', { schema: S.versions }, async () => ({ version: versionDocument(base(ctx)) }));
      app.get('/v3/', { schema: S.versions }, async () => ({ version: versionDocument(base(ctx)) }));
      loginRoute(app, ctx, store, catalog);
      tokenRoutes(app, ctx, store, catalog);
      projectRoutes(app, ctx, store, catalog);
    },
  };
}

/** POST /v3/auth/tokens: password login scoped to a project, audit-logged, throttled. */
function loginRoute(app: FastifyInstance, ctx: DaemonContext, store: IdentityStore, catalog: Catalog): void {
  app.post('/v3/auth/tokens', { schema: S.issueToken }, async (req, reply) => {
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
    let t: IssuedToken;
    try {
      t = await store.issue(user.name, user.password, scope, req.ip);
    } catch (e) {
      if (e instanceof LoginThrottledError) {
        ctx.log.warn(`audit: login of user ${logged(user.name)} from ${req.ip} refused: too many failures, throttled for ${e.retryAfter} s`);
        void reply.header('retry-after', String(e.retryAfter));
      } else ctx.log.warn(`audit: login of user ${logged(user.name)} from ${req.ip} failed: ${(e as Error).message}`);
      throw e;
    }
    ctx.log.info(`audit: login of user ${logged(t.userName)} from ${req.ip} to project ${logged(t.projectName)}: token ${t.auditId}`);
    return reply.code(201).header('x-subject-token', t.token).send(tokenBody(t, catalogUnless(req, catalog)));
  });
}

/** GET / DELETE /v3/auth/tokens: the X-Subject-Token's token, for its own user or an admin or service role. */
function tokenRoutes(app: FastifyInstance, ctx: DaemonContext, store: IdentityStore, catalog: Catalog): void {
  /** The X-Subject-Token's token, if the caller may see it (its own user, or an admin or service role). */
  const subjectOf = (req: FastifyRequest) => {
    const caller = ctx.auth(req);
    const h = req.headers['x-subject-token'];
    const t = store.validate(Array.isArray(h) ? h[0] : h);
    if (!t) throw new CloudletError('NotFound', 'Could not find token.');
    if (!store.maySee(caller, t)) {
      throw new CloudletError('Forbidden', 'You are not authorized to perform the requested action: another user\'s token needs the admin or service role.');
    }
    return { caller, t };
  };
  app.get('/v3/auth/tokens', { schema: S.showToken }, async (req, reply) => {
    const { t } = subjectOf(req);
    return reply.header('x-subject-token', t.token).send(tokenBody(t, catalogUnless(req, catalog)));
  });
  app.delete('/v3/auth/tokens', { schema: S.revokeToken }, async (req, reply) => {
    const { caller, t } = subjectOf(req);
    store.revoke(t.token);
    ctx.log.info(`audit: token ${t.auditId} of user ${logged(t.userName)} revoked by ${logged(caller.userName)} from ${req.ip}`);
    return reply.code(204).send();
  });
}

/** The catalog and the projects: the caller's, or (admins) all. */
function projectRoutes(app: FastifyInstance, ctx: DaemonContext, store: IdentityStore, catalog: Catalog): void {
  app.get('/v3/auth/catalog', { schema: S.catalog }, async (req) => { ctx.auth(req); return { catalog: catalog() }; });
  app.get('/v3/auth/projects', { schema: S.authProjects }, async (req) => {
    const a = ctx.auth(req);
    return { projects: [{ id: a.projectId, name: a.projectName, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id }] };
  });
  app.get('/v3/projects', { schema: S.projects }, async (req) => {
    const a = ctx.requireAdmin(req);
    void a;
    return { projects: store.projects().map((p) => ({ ...p, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id })) };
  });
}
