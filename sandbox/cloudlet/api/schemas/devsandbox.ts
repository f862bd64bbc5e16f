/** Schemas of the local sandbox service's routes (api/devsandbox.ts, baseCreate.ts): console, builds, bases, publish. Only our client calls these. */
import { NO_QUERY, RAW_BODY, params } from './common';

const STR = { type: 'string', maxLength: 4096 } as const;

const buildBody = {
  type: 'object', required: ['build'], additionalProperties: false,
  properties: { build: { type: 'object', required: ['folder'], additionalProperties: false, properties: { folder: STR, name: { type: 'string', maxLength: 255 } } } },
} as const;

const PUBLISH_FIELDS = {
  reference: { type: 'string', maxLength: 1024 }, username: { type: 'string', maxLength: 1024 },
  password: { type: 'string', maxLength: 16384 }, ca: { type: 'string', maxLength: 262144 },
  profile: { enum: ['build', 'wire'] },
} as const;
/** {publish: {...}} or the same fields at the top. */
const publishBody = {
  type: 'object', additionalProperties: false,
  properties: { ...PUBLISH_FIELDS, publish: { type: 'object', additionalProperties: false, properties: PUBLISH_FIELDS } },
} as const;

export const devSandboxSchemas = {
  console: { querystring: NO_QUERY, params: params('id') },
  /** Keystrokes: text/plain or octet-stream, read up to 64 KiB. */
  typeConsole: { querystring: NO_QUERY, params: params('id'), body: RAW_BODY },
  build: { querystring: NO_QUERY, body: buildBody },
  /** {base: {...}}: parseBaseCreate (api/baseCreate.ts) checks every field of `base` and words its refusals. */
  createBase: { querystring: NO_QUERY, body: { type: 'object', required: ['base'], additionalProperties: false, properties: { base: { type: 'object' } } } },
  publish: { querystring: NO_QUERY, params: params('id'), body: publishBody },
};
