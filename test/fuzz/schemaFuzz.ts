/**
 * A schema-aware generator of hostile JSON: a value that fits a JSON Schema (the route schemas of
 * sandbox/cloudlet/api/schemas/), then one mutation of the kinds that broke daemons before: a value
 * of another type somewhere inside, a required key dropped, an unknown or prototype-named key,
 * numbers as strings, huge strings, deep nesting, arrays where a scalar was expected.
 */
import type { Random } from './random';

type Schema = Record<string, any>;

/** Values of every JSON type that have hurt someone: a mutation puts one of these somewhere. */
export const NASTY: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e308, -0, 2 ** 53 + 1, '', ' ', '0', '-1', '1e3', 'NaN', 'true', 'null',
  '../../etc/passwd', '%00', '\u0000', '\ud800', 'x'.repeat(5000), '$name', '__proto__', 'constructor',
  [], [null], ['public'], [[[]]], {}, { a: 1 }, JSON.parse('{"__proto__": {"admin": true}}'), { constructor: { prototype: { x: 1 } } },
];

/** Strings that fit common patterns: tried in order until one matches. */
const CANDIDATES = ['1', '10', '0', 'now', 'all', 'true', 'True', 'a', 'abc', '2030-01-01 00:00', '52:54:00:12:34:56', '0'.repeat(64)];

function typesOf(s: Schema): string[] {
  if (s.type) return Array.isArray(s.type) ? s.type : [s.type];
  if (s.properties || s.additionalProperties !== undefined || s.required) return ['object'];
  if (s.items) return ['array'];
  return ['string', 'integer', 'object', 'array', 'null'];
}

/** A value meant to fit `s` (patterns and if/then are met when easy, not always). */
export function generate(s: Schema, r: Random, depth = 0): unknown {
  if (s.const !== undefined) return s.const;
  if (s.enum) return r.pick(s.enum);
  if (s.anyOf) return generate(r.pick(s.anyOf), r, depth);
  if (s.oneOf) return generate(r.pick(s.oneOf), r, depth);
  const t = r.pick(typesOf(s));
  switch (t) {
    case 'null': return null;
    case 'boolean': return r.chance(0.5);
    case 'integer': case 'number': {
      const min = s.minimum ?? 0, max = Math.min(s.maximum ?? 1000, min + 1000);
      return r.int(min, max);
    }
    case 'string': {
      if (s.pattern) {
        const re = new RegExp(s.pattern, 'u');
        const fit = CANDIDATES.find((c) => re.test(c));
        if (fit !== undefined) return fit;
      }
      const n = r.int(s.minLength ?? 0, Math.min(s.maxLength ?? 12, (s.minLength ?? 0) + 12));
      return Array.from({ length: n }, () => r.pick('abcxyz019-_.'.split(''))).join('');
    }
    case 'array': {
      if (depth > 6) return [];
      const n = r.int(s.minItems ?? 0, Math.min(s.maxItems ?? 3, (s.minItems ?? 0) + 3));
      return Array.from({ length: n }, () => generate(s.items ?? {}, r, depth + 1));
    }
    default: {
      if (depth > 6) return {};
      const out: Record<string, unknown> = {};
      const props: Record<string, Schema> = s.properties ?? {};
      for (const [k, sub] of Object.entries(props)) {
        if ((s.required ?? []).includes(k) || r.chance(0.5)) out[k] = generate(sub, r, depth + 1);
      }
      if (s.additionalProperties && typeof s.additionalProperties === 'object' && r.chance(0.3)) out[`k${r.int(0, 99)}`] = generate(s.additionalProperties, r, depth + 1);
      return out;
    }
  }
}

/** Every place in a value: [parent, key] pairs (the root has no parent). */
function places(v: unknown, out: Array<[any, string | number]> = []): Array<[any, string | number]> {
  if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); places(x, out); });
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) { out.push([v, k]); places((v as any)[k], out); }
  return out;
}

/** `v` with one hostile change; `what` says which, for the failure message. */
export function mutate(v: unknown, r: Random): { value: unknown; what: string } {
  const copy = structuredClone(v);
  const spots = places(copy);
  const kind = spots.length ? r.int(0, 5) : 5;
  if (kind <= 2) {
    const [parent, key] = r.pick(spots);
    const nasty = r.chance(0.15) ? deep(r.int(20, 80)) : structuredClone(r.pick(NASTY));
    parent[key] = nasty;
    return { value: copy, what: `${String(key)} := ${JSON.stringify(nasty)?.slice(0, 60)}` };
  }
  if (kind === 3) {
    const objects = spots.map(([p, k]) => p[k]).filter((x) => x && typeof x === 'object' && !Array.isArray(x) && Object.keys(x).length);
    if (objects.length) {
      const o = r.pick(objects);
      const k = r.pick(Object.keys(o));
      delete o[k];
      return { value: copy, what: `dropped ${k}` };
    }
  }
  if (kind === 4) {
    const objects = [copy, ...spots.map(([p, k]) => p[k])].filter((x) => x && typeof x === 'object' && !Array.isArray(x));
    if (objects.length) {
      const k = r.pick(['extra', '__proto__', 'constructor', 'prototype', 'x'.repeat(300), '']);
      Object.defineProperty(r.pick(objects), k, { value: r.pick(NASTY), enumerable: true, configurable: true, writable: true });
      return { value: copy, what: `added key ${k.slice(0, 20)}` };
    }
  }
  const whole = r.chance(0.2) ? deep(r.int(20, 200)) : r.pick(NASTY);
  return { value: whole, what: `whole body := ${JSON.stringify(whole)?.slice(0, 60)}` };
}

/** `[[[...]]]` n levels deep. */
export function deep(n: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

/** Raw bodies no schema is asked about: broken or odd JSON text. */
export const RAW_BODIES = ['', '{', '[1,', '{"a":}', 'nul', '"\\ud800"', '{"a":1,"a":2}', '{"__proto__":{"x":1}}', '1'.repeat(400), '['.repeat(5000) + ']'.repeat(5000), '\u0000', '{"a":"\\u0000"}'];
