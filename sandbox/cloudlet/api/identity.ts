/**
 * Keystone v3, the subset clients need: version discovery, password auth scoped to a project
 * (token in X-Subject-Token, catalog in the body), token validation and revocation, the caller's
 * projects. Domains are a fixed "Default". Every login attempt is audit-logged with its source
 * address; a token is read or revoked through X-Subject-Token only by its own user or an admin or
 * service role, as Keystone's policy has it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiModule, DaemonContext } from '../context';
import { LoginThrottledError, type IdentityStore, type IssuedToken } from '../identityStore';
import { CloudletError } from '../../common/errors';
import { identitySchemas as S, type TokenRequest } from './schemas/identity';
import { userRoutes } from './identityUsers';

/** Keystone auth methods this identity serves, in the order one is picked when several are named. */
const SUPPORTED_METHODS = ['password', 'application_credential', 'token'];

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
      methods: t.methods,
      ...(t.applicationCredential ? { application_credential: t.applicationCredential } : {}),
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
      userRoutes(app, ctx, store);
    },
  };
}

/** A login attempt, audit-logged either way; a throttled one answers with Retry-After. */
async function audited(ctx: DaemonContext, req: FastifyRequest, reply: FastifyReply, who: string, login: () => Promise<IssuedToken>): Promise<IssuedToken> {
  try {
    return await login();
  } catch (e) {
    if (e instanceof LoginThrottledError) {
      ctx.log.warn(`audit: login of ${who} from ${req.ip} refused: too many failures, throttled for ${e.retryAfter} s`);
      void reply.header('retry-after', String(e.retryAfter));
    } else ctx.log.warn(`audit: login of ${who} from ${req.ip} failed: ${(e as Error).message}`);
    throw e;
  }
}

/** The token one auth method gives (password, application_credential, token re-scoping). */
async function issueBy(ctx: DaemonContext, store: IdentityStore, req: FastifyRequest, reply: FastifyReply, method: string | undefined): Promise<IssuedToken> {
  const { identity, scope } = (req.body as TokenRequest).auth;
  const project = scope?.project;
  if (method === 'password') {
    const user = identity.password?.user;
    if (typeof user?.name !== 'string' || typeof user?.password !== 'string') throw new CloudletError('BadInput', 'auth.identity.password.user needs name and password');
    return audited(ctx, req, reply, `user ${logged(user.name)}`, () => store.issue(user.name!, user.password!, project, req.ip));
  }
  if (method === 'token') {
    const presented = identity.token?.id;
    if (!presented) throw new CloudletError('BadInput', 'auth.identity.token needs id');
    return store.issueFromToken(presented, project);
  }
  if (method === 'application_credential') {
    const c = identity.application_credential;
    if (!c?.secret || !(c.id || (c.name && (c.user?.id || c.user?.name)))) {
      throw new CloudletError('BadInput', 'auth.identity.application_credential needs secret and id, or secret, name and user');
    }
    return audited(ctx, req, reply, `application credential ${logged(c.id ?? c.name!)}`, () => store.issueFromApplicationCredential(c, c.secret!, req.ip));
  }
  throw new CloudletError('BadInput', `auth.identity.methods must include one of ${SUPPORTED_METHODS.join(', ')}`);
}

/** POST /v3/auth/tokens: a token scoped to a project, by password, application credential or token; audit-logged, throttled. */
function loginRoute(app: FastifyInstance, ctx: DaemonContext, store: IdentityStore, catalog: Catalog): void {
  app.post('/v3/auth/tokens', { schema: S.issueToken }, async (req, reply) => {
    const method = SUPPORTED_METHODS.find((m) => (req.body as TokenRequest).auth.identity.methods.includes(m));
    const t = await issueBy(ctx, store, req, reply, method);
    ctx.log.info(`audit: login of user ${logged(t.userName)} from ${req.ip} to project ${logged(t.projectName)}: token ${t.auditId} (method ${method}${t.applicationCredential ? ` ${t.applicationCredential.id}` : ''})`);
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
  const projectView = (p: { id: string; name: string }) => ({
    ...p, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id, description: '', tags: [], options: {},
    links: { self: `${base(ctx)}/v3/projects/${p.id}` },
  });
  app.get('/v3/projects', { schema: S.projects }, async (req) => {
    ctx.requireAdmin(req);
    const q = req.query as { name?: string };
    return { projects: store.projects().filter((p) => q.name === undefined || p.name === q.name).map(projectView) };
  });
  // One project: an admin, or a member of it (Keystone's identity:get_project).
  app.get<{ Params: { projectId: string } }>('/v3/projects/:projectId', { schema: S.project }, async (req) => {
    const a = ctx.auth(req);
    const p = store.projects().find((x) => x.id === req.params.projectId);
    if (p && (a.isAdmin || store.projectsOf(a.userId).some((x) => x.id === p.id))) return { project: projectView(p) };
    if (!a.isAdmin) throw new CloudletError('Forbidden', `You are not authorized to perform the requested action: identity:get_project ${req.params.projectId}.`);
    throw new CloudletError('NotFound', `Could not find project: ${req.params.projectId}.`);
  });
}
