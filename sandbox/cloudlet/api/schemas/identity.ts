/** Schemas of the embedded Keystone's routes (api/identity.ts). Bodies as keystoneauth sends them. */
import { NO_BODY, NO_QUERY, OPEN_QUERY, query } from './common';

const STR = { type: 'string', maxLength: 255 } as const;
const REF = { type: 'object', properties: { id: STR, name: STR } } as const;

/** POST /v3/auth/tokens: password method; other keys Keystone knows (token, application credentials) are let through to the method check. */
const authBody = {
  type: 'object', required: ['auth'], additionalProperties: false,
  properties: {
    auth: {
      type: 'object', required: ['identity'],
      properties: {
        identity: {
          type: 'object', required: ['methods'],
          properties: {
            methods: { type: 'array', minItems: 1, maxItems: 8, items: { type: 'string', maxLength: 64 } },
            password: {
              type: 'object', required: ['user'],
              properties: {
                user: {
                  type: 'object', required: ['password'],
                  properties: { id: STR, name: STR, domain: REF, password: { type: 'string', maxLength: 4096 } },
                },
              },
            },
          },
        },
        scope: {
          anyOf: [
            { type: 'string', maxLength: 64 },
            { type: 'object', properties: { project: { type: 'object', properties: { id: STR, name: STR, domain: REF } }, domain: REF, system: { type: 'object' } } },
          ],
        },
      },
    },
  },
} as const;

const NOCATALOG = query({ nocatalog: { type: 'string', maxLength: 16 }, allow_expired: { type: 'string', maxLength: 16 } });

export const identitySchemas = {
  versions: { querystring: NO_QUERY },
  issueToken: { querystring: NOCATALOG, body: authBody },
  showToken: { querystring: NOCATALOG },
  revokeToken: { querystring: NO_QUERY, body: NO_BODY },
  catalog: { querystring: NO_QUERY },
  authProjects: { querystring: NO_QUERY },
  projects: { querystring: OPEN_QUERY },
};
