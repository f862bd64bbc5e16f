/**
 * Keystone's per-user routes of the embedded identity: the user's projects and application
 * credentials (create, list, show, delete). As Keystone's default policy: a user manages their own
 * credentials (an admin may see and delete anyone's); a credential is made on the caller's project
 * with at most the caller's roles; a token made from a restricted credential manages none.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, DaemonContext } from '../context';
import type { IdentityStore } from '../identityStore';
import type { ApplicationCredential } from '../applicationCredentials';
import { CloudletError } from '../../common/errors';
import { identitySchemas as S, type ApplicationCredentialRequest } from './schemas/identity';

type UserParams = { Params: { userId: string } };
type CredParams = { Params: { userId: string; credId: string } };

export function userRoutes(app: FastifyInstance, ctx: DaemonContext, store: IdentityStore): void {
  const creds = store.applicationCredentials;
  const href = (userId: string, id?: string) => `${ctx.serviceUrl('identity')}/v3/users/${userId}/application_credentials${id ? `/${id}` : ''}`;
  const view = (c: ApplicationCredential) => ({
    id: c.id, name: c.name, description: c.description, user_id: c.userId, project_id: c.projectId, expires_at: c.expiresAt,
    unrestricted: c.unrestricted, roles: c.roles.map((r) => ({ id: r, name: r, domain_id: null })), access_rules: [],
    links: { self: href(c.userId, c.id) },
  });

  /** The caller, when it may act on `userId`'s resources: that user, or (unless `ownerOnly`) an admin. */
  const callerFor = (req: FastifyRequest, userId: string, ownerOnly = false): AuthContext => {
    const a = ctx.auth(req);
    if (a.userId !== userId && (ownerOnly || !a.isAdmin)) {
      throw new CloudletError('Forbidden', `You are not authorized to perform the requested action: user ${a.userId} acting on user ${userId}.`);
    }
    return a;
  };
  /** Keystone: a token from a restricted application credential may not create or delete credentials. */
  const refuseRestricted = (a: AuthContext) => {
    if (store.validate(a.token)?.applicationCredential?.restricted) {
      throw new CloudletError('Forbidden', "Using method 'application_credential' is not allowed for managing additional application credentials.");
    }
  };
  /** Id, or a name within the user's credentials (how `openstack application credential delete NAME` finds it). */
  const find = (userId: string, idOrName: string) => {
    try { return creds.get(userId, idOrName); } catch (e) {
      const byName = creds.list(userId, idOrName)[0];
      if (!byName) throw e;
      return byName;
    }
  };

  app.get<UserParams>('/v3/users/:userId/projects', { schema: S.userProjects }, async (req) => {
    callerFor(req, req.params.userId);
    const projects = store.projectsOf(req.params.userId).map((p) => ({ ...p, domain_id: 'default', enabled: true, is_domain: false, parent_id: 'default', description: '', tags: [], options: {}, links: { self: `${ctx.serviceUrl('identity')}/v3/projects/${p.id}` } }));
    return { projects, links: { self: `${ctx.serviceUrl('identity')}/v3/users/${req.params.userId}/projects`, previous: null, next: null } };
  });

  app.post<UserParams>('/v3/users/:userId/application_credentials', { schema: S.createAppCred }, async (req, reply) => {
    const a = callerFor(req, req.params.userId, true);
    refuseRestricted(a);
    const b = (req.body as ApplicationCredentialRequest).application_credential;
    if (b.access_rules?.length) throw new CloudletError('BadInput', 'access rules are not supported here', { hint: 'limit the credential by roles instead' });
    const roles = b.roles?.length ? b.roles.map((r) => r.name ?? r.id!) : a.roles;
    const missing = roles.filter((r) => !a.roles.includes(r));
    if (missing.length) {
      throw new CloudletError('Forbidden', `the caller does not hold role(s) ${missing.join(', ')} on project ${a.projectName}; an application credential gets at most the caller's roles (${a.roles.join(', ')})`);
    }
    let expiresAt: string | null = null;
    if (b.expires_at) {
      const t = Date.parse(b.expires_at);
      if (Number.isNaN(t)) throw new CloudletError('BadInput', `expires_at ${JSON.stringify(b.expires_at)} is not an ISO 8601 time`);
      if (t <= Date.now()) throw new CloudletError('BadInput', `expires_at ${b.expires_at} is in the past`);
      expiresAt = new Date(t).toISOString();
    }
    const c = creds.create(a.userId, a.projectId, { name: b.name, description: b.description, secret: b.secret, roles: [...new Set(roles)], unrestricted: !!b.unrestricted, expiresAt });
    ctx.log.info(`audit: application credential ${c.id} (${JSON.stringify(c.name)}, roles ${c.roles.join(',')}) created by user ${JSON.stringify(a.userName)} from ${req.ip}`);
    return reply.code(201).send({ application_credential: { ...view(c), secret: c.secret } });
  });

  app.get<UserParams>('/v3/users/:userId/application_credentials', { schema: S.listAppCreds }, async (req) => {
    callerFor(req, req.params.userId);
    const q = req.query as { name?: string };
    return { application_credentials: creds.list(req.params.userId, q.name).map(view), links: { self: href(req.params.userId), previous: null, next: null } };
  });

  app.get<CredParams>('/v3/users/:userId/application_credentials/:credId', { schema: S.showAppCred }, async (req) => {
    callerFor(req, req.params.userId);
    return { application_credential: view(find(req.params.userId, req.params.credId)) };
  });

  app.delete<CredParams>('/v3/users/:userId/application_credentials/:credId', { schema: S.deleteAppCred }, async (req, reply) => {
    const a = callerFor(req, req.params.userId);
    refuseRestricted(a);
    const c = find(req.params.userId, req.params.credId);
    store.deleteApplicationCredential(req.params.userId, c.id);
    ctx.log.info(`audit: application credential ${c.id} of user ${req.params.userId} deleted by ${JSON.stringify(a.userName)} from ${req.ip}; its tokens are revoked`);
    return reply.code(204).send();
  });
}
