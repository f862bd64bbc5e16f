/**
 * Schemas of the Blazar routes (api/reservation.ts). Keys as Debian's python3-blazarclient sends them
 * (create: name, start_date, end_date, before_end_date, reservations, events; update: name,
 * start_date, end_date, reservations); dates and filters are parsed by devices/leaseRequest.ts.
 */
import { NO_BODY, NO_QUERY, FLAG, params, query } from './common';

const DATE = { type: 'string', maxLength: 64 } as const;
/** blazarclient sends min/max as numbers or, from `--reservation min=1`, as digit strings. */
const COUNT = { anyOf: [{ type: 'integer', minimum: 1, maximum: 10000 }, { type: 'string', pattern: '^[0-9]{1,5}$' }] } as const;
/** A device filter: Blazar's JSON text, or the same already as JSON (nesting capped by the filter parser). */
const FILTER = { anyOf: [{ type: 'string', maxLength: 16384 }, { type: 'array', maxItems: 64 }, { type: 'null' }] } as const;

const reservation = {
  type: 'object', required: ['resource_type'],
  properties: { resource_type: { type: 'string', maxLength: 64 }, min: COUNT, max: COUNT, resource_properties: FILTER },
} as const;

const createBody = {
  type: 'object', required: ['name', 'end_date', 'reservations'], additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 80 },
    start_date: DATE, end_date: DATE, before_end_date: { anyOf: [DATE, { type: 'null' }] },
    reservations: { type: 'array', minItems: 1, maxItems: 16, items: reservation },
    events: { type: 'array', maxItems: 16, items: { type: 'object' } },
  },
} as const;

const UPDATE_FIELDS = {
  name: { type: 'string', minLength: 1, maxLength: 80 },
  start_date: DATE, end_date: DATE, before_end_date: { anyOf: [DATE, { type: 'null' }] },
  // refused by the handler with its reason (a device lease keeps its reservations)
  reservations: { type: 'array', maxItems: 16 },
} as const;
/** The values at the top (blazarclient) or inside {"lease": ...}. */
const updateBody = {
  type: 'object', additionalProperties: false,
  properties: { ...UPDATE_FIELDS, lease: { type: 'object', properties: UPDATE_FIELDS, additionalProperties: false } },
} as const;

const LEASE = params('id');

export const reservationSchemas = {
  listLeases: { querystring: query({ all_projects: FLAG }, true) },
  createLease: { querystring: NO_QUERY, body: createBody },
  showLease: { querystring: NO_QUERY, params: LEASE },
  updateLease: { querystring: NO_QUERY, params: LEASE, body: updateBody },
  deleteLease: { querystring: NO_QUERY, params: LEASE, body: NO_BODY },
  listDevices: { querystring: query({}, true) },
  allocations: { querystring: query({}, true) },
  showDevice: { querystring: NO_QUERY, params: params('id') },
  deviceAllocation: { querystring: NO_QUERY, params: params('id') },
};
