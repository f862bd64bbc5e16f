/** Schemas of Nova's informational routes (api/computeInfo.ts): limits, quotas, zones, key pairs, the version list. */
import { NO_BODY, NO_QUERY, OPEN_QUERY, params, query } from './common';

/** Key pair names as Nova takes them: printable, no leading/trailing space, at most 255. */
const KEYPAIR_NAME = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9 _.@-]+$' } as const;

/** Nova's metadata items: keys and values of 1-255 / 0-255 characters. */
const ITEMS = { type: 'object', maxProperties: 128, propertyNames: { minLength: 1, maxLength: 255 }, additionalProperties: { type: 'string', maxLength: 255 } } as const;
const METADATA_KEY = params('id', ['key', { type: 'string', minLength: 1, maxLength: 255 }]);

export const computeInfoSchemas = {
  setMetadata: { querystring: NO_QUERY, params: params('id'), body: { type: 'object', required: ['metadata'], additionalProperties: false, properties: { metadata: ITEMS } } },
  metadataItem: { querystring: NO_QUERY, params: METADATA_KEY },
  setMetadataItem: { querystring: NO_QUERY, params: METADATA_KEY, body: { type: 'object', required: ['meta'], additionalProperties: false, properties: { meta: { ...ITEMS, minProperties: 1, maxProperties: 1 } } } },
  deleteMetadataItem: { querystring: NO_QUERY, params: METADATA_KEY, body: NO_BODY },
  root: { querystring: NO_QUERY },
  limits: { querystring: query({ tenant_id: { type: 'string', maxLength: 255 }, reserved: { type: 'string', maxLength: 8 } }) },
  quota: { querystring: query({ user_id: { type: 'string', maxLength: 255 } }), params: params('projectId') },
  zones: { querystring: NO_QUERY },
  keypairs: { querystring: OPEN_QUERY },
  keypair: { querystring: OPEN_QUERY, params: params(['name', KEYPAIR_NAME]) },
  createKeypair: {
    querystring: NO_QUERY,
    body: {
      type: 'object', required: ['keypair'], additionalProperties: false,
      properties: {
        keypair: {
          type: 'object', required: ['name'], additionalProperties: false,
          properties: { name: KEYPAIR_NAME, public_key: { type: 'string', minLength: 1, maxLength: 16384 }, type: { enum: ['ssh'] }, user_id: { type: 'string', maxLength: 255 } },
        },
      },
    },
  },
  deleteKeypair: { querystring: OPEN_QUERY, params: params(['name', KEYPAIR_NAME]), body: NO_BODY },
};
