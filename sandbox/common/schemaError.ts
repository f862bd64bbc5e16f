/**
 * Ajv's errors in words that name the field: "breakdown.ram is missing", "segments[3].size must be
 * an integer". One wording for every JSON Schema the sandbox checks untrusted input with.
 */
import type { ErrorObject } from 'ajv';

/** `a/b/0/c` (an ajv instancePath) as `a.b[0].c`; `root` when the path is empty. */
export function fieldName(instancePath: string, root: string): string {
  if (!instancePath) return root;
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const p = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p) ? `[${p}]` : (out ? `.${p}` : p);
  }
  return out;
}

const article = (t: string) => (/^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`);
const shown = (v: unknown) => {
  // A body handed over as a stream (an octet-stream sent where JSON was due) is no JSON value.
  try { return JSON.stringify(v)?.slice(0, 80) ?? String(v); } catch { return 'a byte stream'; }
};

/**
 * Whether a value at `instancePath` may be a secret: under a key named like password/secret/token or
 * anywhere in a request's registry login. A mistyped one (a string where an object is due, a number
 * for a password) must not come back in the refusal, which CLIs print and editors log.
 */
export function isSecretPath(instancePath: string): boolean {
  return instancePath.split('/').slice(1).some((k) => /password|secret|token|registry_auth/i.test(k.replace(/~1/g, '/').replace(/~0/g, '~')));
}

/** One ajv error as "<field> <problem>"; `root` names the whole document (e.g. "the manifest"). */
export function describeSchemaError(e: ErrorObject, root: string): string {
  const where = fieldName(e.instancePath, root);
  const data = isSecretPath(e.instancePath) ? '(value not shown)' : shown(e.data);
  const child = (name: string) => (e.instancePath ? `${where}.${name}` : name);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required': return `${child(String(p.missingProperty))} is missing`;
    case 'additionalProperties': return `${child(String(p.additionalProperty))} is not a known field`;
    case 'type': return `${where} must be ${String(p.type).split(',').map((t) => (t === 'array' ? 'a list' : article(t))).join(' or ')}, not ${data}`;
    case 'const': return `${where} must be ${shown(p.allowedValue)}, not ${data}`;
    case 'enum': return `${where} must be one of ${(p.allowedValues as unknown[]).map(shown).join(', ')}, not ${data}`;
    case 'maximum': return `${where} ${data} is over the limit of ${String(p.limit)}`;
    case 'minimum': return `${where} ${data} is below the minimum of ${String(p.limit)}`;
    case 'exclusiveMinimum': case 'exclusiveMaximum': return `${where} ${data} ${e.message}`;
    case 'false schema': return `${where} is not allowed here`;
    case 'pattern': return `${where} ${data} is not of the form ${String(p.pattern)}`;
    default: return `${where} ${e.message ?? 'is invalid'}`;
  }
}
