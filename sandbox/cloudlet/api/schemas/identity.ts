/** Schemas of the embedded Keystone's routes (api/identity.ts). Bodies as keystoneauth sends them. */
import { NO_BODY, NO_QUERY, OPEN_QUERY, params, query } from './common';

const STR = { type: 'string', maxLength: 255 } as const;
const REF = { type: 'object', properties: { id: STR, name: STR } } as const;

/** POST /v3/auth/tokens: methods password, token and application_credential; others are refused by the method check. */
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
            token: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 512 } } },
            application_credential: {
              type: 'object', required: ['secret'],
              properties: { id: STR, name: STR, secret: { type: 'string', minLength: 1, maxLength: 4096 }, user: { type: 'object', properties: { id: STR, name: STR, domain: REF } } },
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

/** What the token route reads of its body (the schema above has checked the types). */
export interface TokenRequest {
  auth: {
    identity: {
      methods: string[];
      password?: { user?: { name?: string; password?: string } };
      token?: { id?: string };
      application_credential?: { id?: string; name?: string; secret?: string; user?: { id?: string; name?: string } };
    };
    scope?: { project?: { id?: string; name?: string } };
  };
}

/** What the application credential create route reads of its body. */
export interface ApplicationCredentialRequest {
  application_credential: {
    name: string;
    description?: string | null;
    secret?: string | null;
    expires_at?: string | null;
    roles?: Array<{ id?: string; name?: string }>;
    unrestricted?: boolean;
    access_rules?: unknown[];
  };
}

const USER_ID = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;
const USER = params(['userId', USER_ID]);
const ROLE_REF = { type: 'object', properties: { id: STR, name: STR, domain_id: { type: ['string', 'null'], maxLength: 64 } }, minProperties: 1 } as const;

/** POST /v3/users/{id}/application_credentials, as OSC 6.0 (keystoneclient) sends it. */
const appCredBody = {
  type: 'object', required: ['application_credential'], additionalProperties: false,
  properties: {
    application_credential: {
      type: 'object', required: ['name'], additionalProperties: false,
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 255 },
        description: { type: ['string', 'null'], maxLength: 1024 },
        secret: { anyOf: [{ type: 'null' }, { type: 'string', minLength: 8, maxLength: 4096 }] },
        expires_at: { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 64 }] },
        roles: { type: 'array', maxItems: 32, items: ROLE_REF },
        unrestricted: { type: 'boolean' },
        access_rules: { type: 'array', maxItems: 64 },
      },
    },
  },
} as const;

export const identitySchemas = {
  versions: { querystring: NO_QUERY },
  issueToken: { querystring: NOCATALOG, body: authBody },
  showToken: { querystring: NOCATALOG },
  revokeToken: { querystring: NO_QUERY, body: NO_BODY },
  catalog: { querystring: NO_QUERY },
  authProjects: { querystring: NO_QUERY },
  projects: { querystring: OPEN_QUERY },
  project: { querystring: NO_QUERY, params: params('projectId') },
  userProjects: { querystring: OPEN_QUERY, params: USER },
  createAppCred: { querystring: NO_QUERY, params: USER, body: appCredBody },
  listAppCreds: { querystring: query({ name: { type: 'string', maxLength: 255 } }), params: USER },
  showAppCred: { querystring: NO_QUERY, params: params(['userId', USER_ID], 'credId') },
  deleteAppCred: { querystring: NO_QUERY, params: params(['userId', USER_ID], 'credId'), body: NO_BODY },
};
