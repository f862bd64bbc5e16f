/**
 * The part of JSON Patch (RFC 6902) that Doni's PATCH /v1/hardware/{id} uses: add, remove,
 * replace and test on object members and array items (`-` appends). Works on a deep copy;
 * the caller decides which top-level paths are writable.
 */
import { CloudletError } from '../common/errors';

export interface PatchOp { op: string; path: string; value?: unknown }

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new CloudletError('BadInput', `JSON-Patch path '${path}' must start with '/'`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

type Container = Record<string, unknown> | unknown[];

function parentOf(doc: unknown, parts: string[], path: string): { parent: Container; key: string } {
  let cur = doc;
  for (const p of parts.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(p)];
    else if (cur && typeof cur === 'object') cur = (cur as Record<string, unknown>)[p];
    else cur = undefined;
    if (cur === undefined) throw new CloudletError('BadInput', `JSON-Patch path '${path}' does not exist`);
  }
  if (!cur || typeof cur !== 'object') throw new CloudletError('BadInput', `JSON-Patch path '${path}' does not exist`);
  return { parent: cur as Container, key: parts[parts.length - 1] };
}

function index(arr: unknown[], key: string, path: string, forAdd: boolean): number {
  if (forAdd && key === '-') return arr.length;
  const i = Number(key);
  if (!/^\d+$/.test(key) || i > arr.length || (!forAdd && i === arr.length)) {
    throw new CloudletError('BadInput', `JSON-Patch path '${path}': no array item ${key}`);
  }
  return i;
}

export function applyJsonPatch<T>(doc: T, ops: unknown): T {
  if (!Array.isArray(ops)) throw new CloudletError('BadInput', 'PATCH body must be a JSON-Patch array of {op, path, value}');
  const out = structuredClone(doc) as unknown;
  for (const raw of ops as PatchOp[]) {
    if (!raw || typeof raw !== 'object' || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw new CloudletError('BadInput', `invalid JSON-Patch operation ${JSON.stringify(raw)}`);
    }
    const parts = pointer(raw.path);
    if (parts.length === 0) throw new CloudletError('BadInput', 'JSON-Patch cannot replace the whole document');
    const { parent, key } = parentOf(out, parts, raw.path);
    const has = Array.isArray(parent) ? /^\d+$/.test(key) && Number(key) < parent.length : Object.prototype.hasOwnProperty.call(parent, key);
    switch (raw.op) {
      case 'add':
        if (Array.isArray(parent)) parent.splice(index(parent, key, raw.path, true), 0, structuredClone(raw.value));
        else parent[key] = structuredClone(raw.value);
        break;
      case 'replace':
      case 'remove':
        if (!has) throw new CloudletError('BadInput', `JSON-Patch ${raw.op}: path '${raw.path}' does not exist`);
        if (Array.isArray(parent)) {
          const i = index(parent, key, raw.path, false);
          if (raw.op === 'remove') parent.splice(i, 1); else parent[i] = structuredClone(raw.value);
        } else if (raw.op === 'remove') delete parent[key];
        else parent[key] = structuredClone(raw.value);
        break;
      case 'test': {
        const cur = Array.isArray(parent) ? parent[Number(key)] : parent[key];
        if (JSON.stringify(cur) !== JSON.stringify(raw.value)) {
          throw new CloudletError('Conflict', `JSON-Patch test failed at '${raw.path}'`);
        }
        break;
      }
      default:
        throw new CloudletError('BadInput', `unsupported JSON-Patch op '${raw.op}' (add, remove, replace, test)`);
    }
  }
  return out as T;
}
