/**
 * The daemon's one auth hook. `resolveCaller` runs before every route (an onRequest hook): it asks
 * the identity provider about the request's X-Auth-Token, which may be a network call, and keeps
 * the outcome on the request. `callerOf` (ctx.auth) then answers synchronously from that outcome:
 * routes that need no caller (version documents, token issue) never fail because of it.
 */
import type { FastifyRequest } from 'fastify';
import type { AuthContext } from './context';
import type { IdentityProvider } from './identityProvider';
import { CloudletError } from '../common/errors';

type Outcome = { caller?: AuthContext; error?: unknown };
const OUTCOME = Symbol('cloudlet.caller');
type WithOutcome = FastifyRequest & { [OUTCOME]?: Outcome };

function tokenOf(req: FastifyRequest): string | undefined {
  const h = req.headers['x-auth-token'];
  const t = Array.isArray(h) ? h[0] : h;
  return t ? t : undefined;
}

export function resolveCaller(provider: IdentityProvider): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const token = tokenOf(req);
    if (!token) return;
    let outcome: Outcome;
    try { outcome = { caller: await provider.validate(token) }; } catch (e) { outcome = { error: e }; }
    (req as WithOutcome)[OUTCOME] = outcome;
  };
}

export function callerOf(req: FastifyRequest): AuthContext {
  const o = (req as WithOutcome)[OUTCOME];
  if (o?.error) throw o.error;
  if (!o?.caller) throw new CloudletError('Unauthorized', 'The request you have made requires authentication.');
  return o.caller;
}
