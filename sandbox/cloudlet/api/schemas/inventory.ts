/**
 * Schemas of the Doni-like inventory routes (api/inventory.ts, admin only). Enrollment takes Doni's
 * shape plus our top-level conveniences; updates are JSON Patch over the writable fields, each
 * path's value typed (devices/deviceInventory.ts checks names and endpoints).
 */
import { NO_BODY, NO_QUERY, jsonPatch, params } from './common';

const PROPERTIES = { type: 'object', maxProperties: 64, propertyNames: { maxLength: 64, not: { enum: ['__proto__', 'constructor', 'prototype'] } } } as const;
const PROJECTS = { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 255 } } as const;
const STR = { type: 'string', maxLength: 255 } as const;

const enrollBody = {
  type: 'object', required: ['name'], additionalProperties: false,
  properties: {
    name: STR, hardware_type: STR, machine_name: STR, model: STR, properties: PROPERTIES,
    authorized_projects: PROJECTS, engine_endpoint: { type: 'string', maxLength: 1024 },
  },
} as const;

const patchBody = jsonPatch({
  ops: ['add', 'replace', 'remove', 'test'],
  pathPattern: '^/(name|engine_endpoint|authorized_projects(/(-|[0-9]{1,4}))?|properties(/(?!__proto__$|constructor$|prototype$)[^/]{1,64})?)$',
  values: [
    ['/name', STR], ['/engine_endpoint', { type: 'string', maxLength: 1024 }], ['/properties', PROPERTIES],
    ['/authorized_projects', PROJECTS], [/^\/authorized_projects\//, STR],
  ],
});

const HARDWARE = params('id');

export const inventorySchemas = {
  list: { querystring: NO_QUERY },
  enroll: { querystring: NO_QUERY, body: enrollBody },
  show: { querystring: NO_QUERY, params: HARDWARE },
  update: { querystring: NO_QUERY, params: HARDWARE, body: patchBody },
  remove: { querystring: NO_QUERY, params: HARDWARE, body: NO_BODY },
  sync: { querystring: NO_QUERY, params: HARDWARE, body: NO_BODY },
};
