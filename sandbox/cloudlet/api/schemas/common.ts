/**
 * Building blocks of the route schemas (one module per API module beside this file). Every route
 * declares querystring, params (exactly when its path has parameters) and, for methods with a body,
 * body: sandbox/cloudlet/validation.ts refuses a route registered without them. Query values are
 * strings as sent (no coercion): numbers in a query are strings with a pattern.
 */

/** A route that takes no query parameters. */
export const NO_QUERY = { type: 'object', additionalProperties: false } as const;

/** An OpenStack list whose clients may add filters we do not read: any single-valued parameter, ignored. */
export const OPEN_QUERY = { type: 'object', additionalProperties: { type: 'string', maxLength: 1024 } } as const;

/** A query with these parameters (all strings) and no others. */
export function query(properties: Record<string, object>, open = false): object {
  return { type: 'object', properties, additionalProperties: open ? { type: 'string', maxLength: 1024 } : false };
}

/** A boolean-ish flag as OpenStack clients send it in a query (?all_projects=1, ?force=True). */
export const FLAG = { type: 'string', enum: ['', '0', '1', 'true', 'false', 'True', 'False', 'yes', 'no'] } as const;
/** A whole number in a query. */
export const DIGITS = { type: 'string', pattern: '^[0-9]{1,9}$' } as const;

/** No body: none at all, or an empty JSON object (some clients send `{}` with an action). */
export const NO_BODY = { description: 'no body', anyOf: [{ type: 'null' }, { type: 'object', maxProperties: 0 }] } as const;

/** A body the route's content-type parser hands over as a byte stream, checked by the handler as it reads. */
export const RAW_BODY = { description: 'a byte stream read and bounded by the handler' } as const;

/** An identifier in a path or a body (UUIDs, names, digests). */
export const ID = { type: 'string', minLength: 1, maxLength: 255 } as const;

/** Path parameters, all identifiers unless given another schema. */
export function params(...names: Array<string | [string, object]>): object {
  const entries = names.map((n) => (typeof n === 'string' ? [n, ID] : n));
  return { type: 'object', properties: Object.fromEntries(entries), required: entries.map(([n]) => n), additionalProperties: false };
}

/** A non-empty display name. */
export const NAME = { type: 'string', minLength: 1, maxLength: 255 } as const;

/** A JSON-Patch operation on `path`s matching `pathPattern`, its value checked by `valueRules` (path prefix -> schema). */
export function jsonPatch(o: { ops: string[]; pathPattern: string; values: Array<[RegExp | string, object]>; maxOps?: number }): object {
  const rules = o.values.map(([p, value]) => ({
    if: { type: 'object', properties: { path: typeof p === 'string' ? { const: p } : { type: 'string', pattern: p.source } }, required: ['path'] },
    then: { type: 'object', properties: { value } },
  }));
  return {
    type: 'array', maxItems: o.maxOps ?? 64,
    items: {
      type: 'object', required: ['op', 'path'], additionalProperties: false,
      properties: { op: { enum: o.ops }, path: { type: 'string', pattern: o.pathPattern }, value: {} },
      allOf: [
        // add and replace carry a value; remove does not need one
        { if: { type: 'object', properties: { op: { enum: ['add', 'replace', 'test'] } }, required: ['op'] }, then: { type: 'object', properties: { value: {} }, required: ['value'] } },
        ...rules,
      ],
    },
  };
}
