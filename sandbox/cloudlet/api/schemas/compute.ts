/**
 * Schemas of the Nova routes (api/compute*.ts). A server create is open at the `server` level:
 * Debian's novaclient and openstackclient send min_count, max_count, networks, security_groups,
 * key_name, user_data, block_device_mapping_v2 ... which a cloudlet does not use; the keys it reads
 * are typed, with Nova's limits (names and metadata 255 characters, 128 metadata items). Next to
 * `server`, `cloudlet:registry_auth` carries the caller's registry login for an oci:// synthesis.
 * Actions are closed: one key, the action, each with its own argument.
 */
import { NO_BODY, NO_QUERY, OPEN_QUERY, ID, params, query } from './common';

const STR255 = { type: 'string', maxLength: 255 } as const;

/** metadata.ports: a comma-separated list of guest TCP ports, digits only ("1e3" is no port). */
export const PORTS_PATTERN = '^\\s*([0-9]{1,5}\\s*(,\\s*[0-9]{1,5}\\s*)*)?$';

const METADATA = {
  type: 'object', maxProperties: 128, propertyNames: { minLength: 1, maxLength: 255 },
  properties: { ports: { type: 'string', pattern: PORTS_PATTERN } },
  additionalProperties: STR255,
} as const;

const createBody = {
  type: 'object', required: ['server'], additionalProperties: false,
  properties: {
    server: {
      type: 'object', required: ['name'],
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 255 },
        imageRef: { type: ['string', 'null'], maxLength: 2048 },
        // Nova: a flavor id or URL, string or integer
        flavorRef: { anyOf: [{ type: 'string', minLength: 1, maxLength: 2048 }, { type: 'integer', minimum: 0 }] },
        metadata: METADATA,
        min_count: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: '^[0-9]{1,4}$' }] },
        max_count: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: '^[0-9]{1,4}$' }] },
        user_data: { type: ['string', 'null'], maxLength: 65535 },
      },
    },
    'os:scheduler_hints': { type: 'object' },
    // The caller's login to an oci:// overlay_url's registry, for that pull only (servers/serverRequest.ts).
    'cloudlet:registry_auth': {
      type: 'object', required: ['username', 'password'], additionalProperties: false,
      properties: { username: { type: 'string', minLength: 1, maxLength: 255 }, password: { type: 'string', minLength: 1, maxLength: 4096 } },
    },
    'OS-SCH-HNT:scheduler_hints': { type: 'object' },
  },
} as const;

const handoff = {
  type: 'object', required: ['handoff_url', 'dest_token'], additionalProperties: false,
  properties: {
    handoff_url: { type: 'string', pattern: '^https?://', maxLength: 2048 },
    dest_token: { type: 'string', minLength: 1, maxLength: 8192 },
    dest_vmname: { type: 'string', minLength: 1, maxLength: 255 },
    dest_tls_fingerprint: { type: 'string', maxLength: 256 },
  },
} as const;

/** What novaclient and openstacksdk send with pause, unpause, os-stop: null (an empty object too). */
const NO_ARGUMENT = NO_BODY;

const actionBody = {
  type: 'object', minProperties: 1, maxProperties: 1, additionalProperties: false,
  properties: {
    pause: NO_ARGUMENT, unpause: NO_ARGUMENT, 'os-stop': NO_ARGUMENT, 'os-start': NO_ARGUMENT,
    reboot: { type: 'object', required: ['type'], additionalProperties: false, properties: { type: { enum: ['SOFT', 'HARD'] } } },
    // length: lines from the end, a number or a string of digits; null or -1 for all.
    'os-getConsoleOutput': {
      anyOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, properties: { length: { anyOf: [{ type: 'null' }, { type: 'integer', minimum: -1, maximum: 1000000 }, { type: 'string', pattern: '^-?[0-9]{1,7}$' }] } } }],
    },
    'cloudlet-overlay-finish': {
      anyOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, properties: { 'overlay-name': { type: 'string', minLength: 1, maxLength: 255 } } }],
    },
    'cloudlet-handoff': handoff,
  },
} as const;

const SERVER = params('id');
const FLAVOR = params('id');

export const computeSchemas = {
  version: { querystring: NO_QUERY },
  listFlavors: { querystring: OPEN_QUERY },
  showFlavor: { querystring: NO_QUERY, params: FLAVOR },
  flavorExtraSpecs: { querystring: NO_QUERY, params: FLAVOR },
  /** name (a substring), status, all_tenants; other Nova filters (limit, marker, changes-since, ...) ignored. */
  listServers: { querystring: query({ name: STR255, status: { type: 'string', maxLength: 32 }, all_tenants: { type: 'string', maxLength: 8 }, marker: ID }, true) },
  showServer: { querystring: NO_QUERY, params: SERVER },
  serverMetadata: { querystring: NO_QUERY, params: SERVER },
  createServer: { querystring: NO_QUERY, body: createBody },
  deleteServer: { querystring: NO_QUERY, params: SERVER, body: NO_BODY },
  action: { querystring: NO_QUERY, params: SERVER, body: actionBody },
};
