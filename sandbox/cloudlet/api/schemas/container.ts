/**
 * Schemas of the Zun routes (api/container.ts). Zun clients send many keys a device container does
 * not use (cpu, memory, restart_policy, security_groups, nets, ...): the top level stays open, the
 * keys read here are typed; devices/containerRequest.ts checks the rest.
 */
import { NO_BODY, NO_QUERY, FLAG, DIGITS, params, query } from './common';

const STRINGS = { type: 'object', maxProperties: 256, propertyNames: { maxLength: 255 }, additionalProperties: { type: 'string', maxLength: 32768 } } as const;
const ARGV = { anyOf: [{ type: 'string', maxLength: 32768 }, { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 32768 } }, { type: 'null' }] } as const;

const createBody = {
  type: 'object', required: ['image'],
  properties: {
    image: { type: 'string', minLength: 1, maxLength: 1024 },
    name: { type: 'string', maxLength: 255 },
    command: ARGV, entrypoint: ARGV,
    environment: { anyOf: [STRINGS, { type: 'null' }] }, labels: { anyOf: [STRINGS, { type: 'null' }] },
    workdir: { type: ['string', 'null'], maxLength: 4096 },
    image_pull_policy: { type: ['string', 'null'], maxLength: 32 },
    exposed_ports: { anyOf: [{ type: 'object', maxProperties: 256, additionalProperties: { type: 'object' } }, { type: 'null' }] },
    hints: { anyOf: [{ type: 'object', properties: { reservation: { type: 'string', maxLength: 255 }, device: { type: 'string', maxLength: 255 }, network: { type: 'string', maxLength: 32 } } }, { type: 'string', maxLength: 4096 }] },
    run: { type: 'boolean' },
  },
} as const;

const CONTAINER = params('id');

export const containerSchemas = {
  /** Zun's root document (at the service root, /container). */
  root: { querystring: NO_QUERY },
  create: { querystring: query({ run: FLAG }), body: createBody },
  list: { querystring: query({ all_projects: FLAG }, true) },
  /** zunclient sends all_projects=False with show and delete. */
  show: { querystring: query({ all_projects: FLAG }), params: CONTAINER },
  start: { querystring: NO_QUERY, params: CONTAINER, body: NO_BODY },
  stop: { querystring: query({ timeout: { type: 'string', pattern: '^[0-9]{1,6}(\\.[0-9]{1,3})?$' } }), params: CONTAINER, body: NO_BODY },
  logs: {
    querystring: query({ stdout: FLAG, stderr: FLAG, timestamps: FLAG, tail: { type: 'string', pattern: '^(all|[0-9]{1,9})$' }, since: DIGITS }),
    params: CONTAINER,
  },
  /** zunclient sends the command in the query (with run and interactive), our client in the body. */
  execute: {
    querystring: query({ command: { type: 'string', maxLength: 32768 }, run: FLAG, interactive: FLAG }),
    params: CONTAINER,
    body: { anyOf: [{ type: 'null' }, { type: 'object', properties: { command: { type: 'string', maxLength: 32768 } }, additionalProperties: false }] },
  },
  remove: { querystring: query({ force: FLAG, stop: FLAG, all_projects: FLAG }), params: CONTAINER, body: NO_BODY },
};
