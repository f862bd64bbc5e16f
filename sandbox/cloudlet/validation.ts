/**
 * The daemon's one request-validation layer. Every route declares the schemas of its query, path
 * parameters and body (modules under api/schemas/); `installValidation` makes that a rule, not a
 * habit: an onRoute hook refuses at registration any route that leaves one out. Schemas run in ajv's
 * strict mode with no type coercion, no defaults and no removal of extra keys, so a handler sees the
 * values exactly as the client sent them. JSON bodies are refused above MAX_JSON_DEPTH levels of
 * nesting before they are parsed (nothing downstream recurses over a client's structure unbounded).
 */
import Ajv, { type ErrorObject } from 'ajv';
import type { FastifyBodyParser, FastifyInstance, FastifySchema } from 'fastify';
import { CloudletError } from '../common/errors';
import { jsonDepth } from '../common/jsonDepth';
import { describeSchemaError, fieldName } from '../common/schemaError';

/** Deepest nesting of arrays and objects a JSON body may have (real bodies have under 10). */
export const MAX_JSON_DEPTH = 64;

/** Media types whose bodies are JSON (Glance's image update and Doni's hardware update are JSON Patch). */
const JSON_TYPES = ['application/json', 'application/openstack-images-v2.1-json-patch', 'application/json-patch+json'];

/** Methods whose requests carry a body a route must declare (NO_BODY when it takes none). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function createAjv(): Ajv {
  // verbose: errors carry the offending value, so a refusal can say what was sent
  return new Ajv({ strict: true, allowUnionTypes: true, coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false, verbose: true });
}

/** A registered route as the rule sees it. */
export interface RouteShape { method: string | string[]; url: string; schema?: FastifySchema }

/** What a route's schema leaves out of the rule (undefined: it follows it). */
export function routeSchemaProblem(r: RouteShape): string | undefined {
  const methods = Array.isArray(r.method) ? r.method : [r.method];
  const s = r.schema as Record<string, unknown> | undefined;
  if (!s) return 'declares no schema';
  if (s.querystring === undefined) return 'declares no querystring schema (NO_QUERY when it takes none)';
  const names = [...r.url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]);
  if (names.length) {
    const params = s.params as { required?: string[]; additionalProperties?: unknown } | undefined;
    if (!params) return `declares no params schema for ${names.map((n) => `:${n}`).join(', ')}`;
    const missing = names.filter((n) => !params.required?.includes(n));
    if (missing.length) return `params schema does not require ${missing.join(', ')}`;
    if (params.additionalProperties !== false) return 'params schema allows additional properties';
  } else if (s.params !== undefined) return 'declares a params schema for a path without parameters';
  const withBody = methods.some((m) => BODY_METHODS.has(m));
  if (withBody && s.body === undefined) return 'declares no body schema (NO_BODY when it takes none)';
  if (!withBody && s.body !== undefined) return 'declares a body schema for a method without a body';
  return undefined;
}

/**
 * One ajv (strict, no coercion) for every route, JSON parsers with the depth cap, and the hook
 * that throws when a route is registered without its schemas. Call before any route is registered;
 * returns the list the routes are recorded in as they register.
 */
export function installValidation(app: FastifyInstance): RouteShape[] {
  const ajv = createAjv();
  const routes: RouteShape[] = [];
  app.setValidatorCompiler(({ schema }) => ajv.compile(schema as object));
  app.addHook('onRoute', (r) => {
    routes.push({ method: r.method, url: r.url, schema: r.schema });
    const problem = routeSchemaProblem(r);
    if (problem) throw new Error(`route ${String(r.method)} ${r.url} ${problem}: every route declares its schemas (sandbox/cloudlet/api/schemas/, docs/security.md)`);
  });
  const parse = app.getDefaultJsonParser('error', 'error');
  const capped: FastifyBodyParser<string | Buffer> = (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    // An empty body sent as JSON is no body (novaclient's actions, zunclient's start/stop send
    // Content-Type: application/json with nothing): the route's schema sees null, as without a type.
    if (text.trim() === '') { done(null, undefined); return; }
    if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
      done(new CloudletError('BadInput', `request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      return;
    }
    parse(req, text, done);
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, capped);
  return routes;
}

const PART: Record<string, string> = { body: 'request body', querystring: 'query', params: 'path', headers: 'headers' };

/** Message and hint of a schema refusal: OpenStack's wording, both naming the field and what it must be. */
export function validationAnswer(errors: ErrorObject[], context: string | undefined): { message: string; hint: string } {
  // The innermost error says most: ajv lists a failed "then"/"anyOf" after the errors inside it.
  const e = errors.find((x) => !['if', 'anyOf', 'oneOf', 'allOf'].includes(x.keyword)) ?? errors[0];
  const part = PART[context ?? 'body'] ?? String(context);
  const p = e.params as Record<string, unknown>;
  const leaf = (p.missingProperty ?? p.additionalProperty) as string | undefined;
  const field = leaf === undefined ? fieldName(e.instancePath, '') : fieldName(`${e.instancePath}/${leaf}`, '');
  // NO_BODY's anyOf (null or {}) would read "must be a null": say what it means.
  const noBody = errors.find((x) => x.keyword === 'anyOf' && (x.parentSchema as { description?: string } | undefined)?.description === 'no body');
  const problem = !noBody ? describeSchemaError(e, `the ${part}`)
    : noBody.instancePath ? `${fieldName(noBody.instancePath, '')} takes no argument (null or {})` : 'this call takes no body';
  return { message: field ? `Invalid input for field/attribute ${field}. ${problem}` : `Invalid input: ${problem}`, hint: `${part}: ${problem}` };
}
