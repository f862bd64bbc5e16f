/**
 * cloudlet.yaml: what `cloudlet build` does with a workspace. Parsed with yaml's document API so
 * every schema error points at the line and column of the offending value.
 *
 *   base: debian-min            # base name or ID (prefix)
 *   name: my-backend            # optional: names the sandbox and the overlay
 *   copy:                       # files or folders of the workspace, copied into the guest
 *     - from: app/              #   relative to the workspace
 *       to: /srv/app            #   absolute path in the guest
 *   install:                    # shell commands, run in order; any failure stops the build
 *     - chmod +x /srv/app/run.sh
 *   start: /srv/app/run.sh      # starts the back-end (left running in the background)
 *   ports: [80]                 # guest TCP ports forwarded to 127.0.0.1
 *   ready:                      # readiness: an HTTP answer on a port, or a command that exits 0
 *     http: { port: 80, path: /, status: 200 }
 *     timeout: 60               # seconds
 *   discard:                    # before the snapshot: leave out what the guest freed (default: both on)
 *     memory: true              #   free guest memory zeroed (no page cache evicted)
 *     disk: true                #   fstrim: freed disk blocks leave the disk layer
 */
import Ajv, { ErrorObject } from 'ajv';
import * as fs from 'fs';
import * as path from 'path';
import { Document, isNode, LineCounter, parseDocument } from 'yaml';
import { CloudletError } from '../common/errors';
import { DEFAULT_DISCARD, type DiscardOptions } from '../overlay/discard';

export interface BuildCopy { from: string; to: string }
export interface BuildSpec {
  base: string;
  name?: string;
  copy: BuildCopy[];
  install: string[];
  start?: string;
  ports: number[];
  ready?: { http?: { port: number; path: string; status: number }; command?: string; timeout: number };
  /** Discards before the snapshot (sandbox/overlay/discard.ts); both on unless the file says otherwise. */
  discard: DiscardOptions;
  /** The folder the file was read from; `copy[].from` is relative to it. */
  workspace: string;
}

export const BUILD_FILE = 'cloudlet.yaml';

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['base'],
  properties: {
    base: { type: 'string', minLength: 1 },
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' },
    copy: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: ['from', 'to'],
        properties: { from: { type: 'string', minLength: 1 }, to: { type: 'string', pattern: '^/' } },
      },
    },
    install: { type: 'array', items: { type: 'string', minLength: 1 } },
    start: { type: 'string', minLength: 1 },
    ports: { type: 'array', items: { type: 'integer', minimum: 1, maximum: 65535 }, uniqueItems: true },
    ready: {
      type: 'object', additionalProperties: false,
      properties: {
        http: {
          type: 'object', additionalProperties: false, required: ['port'],
          properties: {
            port: { type: 'integer', minimum: 1, maximum: 65535 },
            path: { type: 'string', pattern: '^/' },
            status: { type: 'integer', minimum: 100, maximum: 599 },
          },
        },
        command: { type: 'string', minLength: 1 },
        timeout: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
      },
    },
    discard: {
      type: 'object', additionalProperties: false,
      properties: { memory: { type: 'boolean' }, disk: { type: 'boolean' } },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(schema);

function describe(e: ErrorObject): string {
  const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'the file';
  switch (e.keyword) {
    case 'additionalProperties': return `${where === 'the file' ? 'top level' : where}: unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    case 'required': return `${where}: missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'type': {
      const t = (e.params as { type: string }).type;
      return `${where}: must be ${t === 'array' ? 'a list' : `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`}`;
    }
    case 'pattern':
      if (where.endsWith('.to')) return `${where}: must be an absolute path in the guest (start with /)`;
      if (where.endsWith('.path')) return `${where}: must start with /`;
      return `${where}: ${e.message}`;
    default: return `${where}: ${e.message}`;
  }
}

/** Line:column of the YAML node at an ajv instance path (or of its nearest parent that exists). */
function position(doc: Document, lc: LineCounter, instancePath: string, keyword: string, params: Record<string, unknown>): string {
  const parts = instancePath.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~')));
  if (keyword === 'additionalProperties') parts.push(params.additionalProperty as string);
  for (let n = parts.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(parts.slice(0, n), true);
    if (isNode(node) && node.range) {
      // For an unknown key point at the key, not its value.
      let offset = node.range[0];
      if (keyword === 'additionalProperties' && n === parts.length) {
        const parent = n > 1 ? doc.getIn(parts.slice(0, n - 1), true) : doc.contents;
        const pair = (parent as { items?: Array<{ key: { value?: unknown; range?: number[] } }> })?.items?.find((p) => p.key?.value === parts[n - 1]);
        if (pair?.key?.range) offset = pair.key.range[0];
      }
      const { line, col } = lc.linePos(offset);
      return `${line}:${col}`;
    }
  }
  return '1:1';
}

/** Parses and validates cloudlet.yaml text. Errors: BadInput "FILE:LINE:COL: what" (one per line). */
export function parseBuildFile(text: string, file: string): BuildSpec {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length) {
    const msgs = doc.errors.map((e) => {
      const { line, col } = lc.linePos(e.pos[0]);
      return `${file}:${line}:${col}: ${e.message.split('\n')[0]}`;
    });
    throw new CloudletError('BadInput', `${file} is not valid YAML:\n${msgs.join('\n')}`);
  }
  const data = doc.toJS() as unknown;
  if (data === null || data === undefined) throw new CloudletError('BadInput', `${file}:1:1: the file is empty; it needs at least "base:"`);
  if (!validate(data)) {
    const seen = new Set<string>();
    const msgs: string[] = [];
    for (const e of validate.errors ?? []) {
      const m = `${file}:${position(doc, lc, e.instancePath, e.keyword, e.params as Record<string, unknown>)}: ${describe(e)}`;
      if (!seen.has(m)) { seen.add(m); msgs.push(m); }
    }
    throw new CloudletError('BadInput', `${file} has ${msgs.length} problem${msgs.length > 1 ? 's' : ''}:\n${msgs.join('\n')}`);
  }
  const d = data as Omit<BuildSpec, 'workspace' | 'copy' | 'install' | 'ports' | 'discard'> & Partial<Omit<BuildSpec, 'discard'>> & { discard?: Partial<DiscardOptions> };
  const workspace = path.dirname(path.resolve(file));
  const spec: BuildSpec = {
    base: d.base, name: d.name, copy: d.copy ?? [], install: d.install ?? [], start: d.start, ports: d.ports ?? [],
    ready: d.ready ? { ...d.ready, timeout: d.ready.timeout ?? 120, http: d.ready.http ? { port: d.ready.http.port, path: d.ready.http.path ?? '/', status: d.ready.http.status ?? 200 } : undefined } : undefined,
    discard: { ...DEFAULT_DISCARD, ...(d.discard ?? {}) },
    workspace,
  };
  // Cross-field checks the schema cannot express, still pointing at a line.
  const at = (p: Array<string | number>) => {
    const node = doc.getIn(p, true);
    if (isNode(node) && node.range) { const { line, col } = lc.linePos(node.range[0]); return `${file}:${line}:${col}`; }
    return `${file}:1:1`;
  };
  spec.copy.forEach((c, i) => {
    const src = path.resolve(workspace, c.from);
    if (path.relative(workspace, src).startsWith('..')) throw new CloudletError('BadInput', `${at(['copy', i, 'from'])}: copy.${i}.from "${c.from}" is outside the workspace`);
    if (!fs.existsSync(src)) throw new CloudletError('BadInput', `${at(['copy', i, 'from'])}: copy.${i}.from "${c.from}" does not exist in ${workspace}`);
  });
  if (spec.ready?.http && !spec.ports.includes(spec.ready.http.port)) {
    throw new CloudletError('BadInput', `${at(['ready', 'http', 'port'])}: ready.http.port ${spec.ready.http.port} is not in ports`);
  }
  if (spec.ready && !spec.ready.http && !spec.ready.command) throw new CloudletError('BadInput', `${at(['ready'])}: ready needs "http" or "command"`);
  return spec;
}

/** Reads WORKSPACE/cloudlet.yaml (or the file given). */
export function loadBuildFile(fileOrDir: string): BuildSpec {
  const file = fs.existsSync(fileOrDir) && fs.statSync(fileOrDir).isDirectory() ? path.join(fileOrDir, BUILD_FILE) : fileOrDir;
  if (!fs.existsSync(file)) throw new CloudletError('NotFound', `${file} does not exist`, { hint: `write a ${BUILD_FILE} in the workspace (see test/fixtures/sample-backend/${BUILD_FILE})` });
  return parseBuildFile(fs.readFileSync(file, 'utf8'), file);
}
