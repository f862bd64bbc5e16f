/**
 * Blazar's `resource_properties` filter for device reservations: a JSON string such as
 *   ["and", ["==", "$machine_name", "raspberrypi4-64"], [">", "$memory_mb", 1024]]
 * `$x` names a device attribute (name, machine_name, model, uid, or any free-form property).
 * Parsed once when a lease is created (bad filters are refused with 400 before anything is
 * reserved) and evaluated against every candidate device by the scheduler.
 */
import { CloudletError } from '../common/errors';
import { jsonDepth } from '../common/jsonDepth';

export const COMPARISONS = ['==', '!=', '<', '>', '<=', '>='] as const;
export const JUNCTIONS = ['and', 'or'] as const;
type Comparison = (typeof COMPARISONS)[number];
type Junction = (typeof JUNCTIONS)[number];
type Scalar = string | number | boolean | null;

export type ResourceFilter =
  | { kind: 'all' }
  | { kind: 'compare'; op: Comparison; left: Operand; right: Operand }
  | { kind: 'junction'; op: Junction; parts: ResourceFilter[] };

/** A literal value or a `$name` reference to a device attribute. */
export type Operand = { ref: string } | { value: Scalar };

/** Attributes a filter can see: flat name -> value. */
export type DeviceAttributes = Record<string, unknown>;

function bad(message: string): CloudletError {
  return new CloudletError('BadInput', `Invalid resource_properties: ${message}`, {
    hint: 'use a JSON filter such as ["and", ["==", "$machine_name", "raspberrypi4-64"], [">", "$memory_mb", 1024]]',
  });
}

/** A client's value in a message: JSON, cut short (it may be as large as the body). */
function short(v: unknown): string {
  let t: string;
  try { t = JSON.stringify(v) ?? String(v); } catch { t = '(a value nested too deeply to show)'; }
  return t.length > 80 ? `${t.slice(0, 80)}...` : t;
}

/** Parses the JSON text (or an already parsed array). Empty string / [] / null mean "any device". */
export function parseResourceFilter(input: unknown): ResourceFilter {
  let tree = input;
  if (typeof input === 'string') {
    if (input.trim() === '') return { kind: 'all' };
    // Checked on the text: a deep enough value would overflow the stack of whatever walks it next.
    if (jsonDepth(input, MAX_FILTER_DEPTH) > MAX_FILTER_DEPTH) throw bad(`conditions nest deeper than ${MAX_FILTER_DEPTH} levels`);
    try {
      tree = JSON.parse(input);
    } catch {
      throw bad(`not valid JSON: ${input.length > 80 ? `${input.slice(0, 80)}...` : input}`);
    }
  }
  if (tree === null || tree === undefined || (Array.isArray(tree) && tree.length === 0)) return { kind: 'all' };
  return parseNode(tree, 1);
}

/** How deep and/or may nest: real filters use two or three levels; a deeper one would only cost stack. */
export const MAX_FILTER_DEPTH = 16;

function parseNode(node: unknown, depth: number): ResourceFilter {
  if (depth > MAX_FILTER_DEPTH) throw bad(`conditions nest deeper than ${MAX_FILTER_DEPTH} levels`);
  if (!Array.isArray(node) || node.length === 0) throw bad(`expected [operator, ...] but got ${short(node)}`);
  const [op, ...args] = node as unknown[];
  if (typeof op !== 'string') throw bad(`operator must be a string, got ${short(op)}`);
  if ((JUNCTIONS as readonly string[]).includes(op)) {
    if (args.length === 0) throw bad(`'${op}' needs at least one condition`);
    return { kind: 'junction', op: op as Junction, parts: args.map((a) => parseNode(a, depth + 1)) };
  }
  if ((COMPARISONS as readonly string[]).includes(op)) {
    if (args.length !== 2) throw bad(`'${op}' takes exactly two operands, got ${args.length}`);
    return { kind: 'compare', op: op as Comparison, left: parseOperand(args[0]), right: parseOperand(args[1]) };
  }
  throw bad(`unknown operator '${op}' (allowed: ${[...COMPARISONS, ...JUNCTIONS].join(', ')})`);
}

function parseOperand(x: unknown): Operand {
  if (typeof x === 'string' && x.startsWith('$') && x.length > 1) return { ref: x.slice(1) };
  if (x === null || ['string', 'number', 'boolean'].includes(typeof x)) return { value: x as Scalar };
  throw bad(`operand must be a string, number, boolean or $attribute, got ${short(x)}`);
}

function resolve(o: Operand, attrs: DeviceAttributes): { found: boolean; value: unknown } {
  if ('value' in o) return { found: true, value: o.value };
  return { found: Object.prototype.hasOwnProperty.call(attrs, o.ref) && attrs[o.ref] !== undefined, value: attrs[o.ref] };
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** Numbers compare as numbers (properties often arrive as strings: "2048"), anything else as text. */
function compare(a: unknown, b: unknown): number {
  const na = asNumber(a), nb = asNumber(b);
  if (na !== undefined && nb !== undefined) return na === nb ? 0 : na < nb ? -1 : 1;
  const sa = typeof a === 'string' ? a : JSON.stringify(a);
  const sb = typeof b === 'string' ? b : JSON.stringify(b);
  return sa === sb ? 0 : sa < sb ? -1 : 1;
}

/** True when the device matches. A reference to an attribute the device lacks never matches. */
export function matchesFilter(f: ResourceFilter, attrs: DeviceAttributes): boolean {
  switch (f.kind) {
    case 'all': return true;
    case 'junction':
      return f.op === 'and' ? f.parts.every((p) => matchesFilter(p, attrs)) : f.parts.some((p) => matchesFilter(p, attrs));
    case 'compare': {
      const l = resolve(f.left, attrs), r = resolve(f.right, attrs);
      if (!l.found || !r.found) return false;
      const c = compare(l.value, r.value);
      switch (f.op) {
        case '==': return c === 0;
        case '!=': return c !== 0;
        case '<': return c < 0;
        case '>': return c > 0;
        case '<=': return c <= 0;
        case '>=': return c >= 0;
      }
    }
  }
  return false;
}
