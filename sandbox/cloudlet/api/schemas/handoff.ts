/**
 * Schemas of the handoff protocol's routes at the destination (sandbox/handoff/handoffReceiver.ts).
 * Only another cloudlet daemon calls them, so everything is closed except the source's VM config
 * (its base's, of which the destination takes only the MAC) and the report's measurements.
 * Rounds are raw streams, checked by handoff/roundReader.ts as strictly as an overlay manifest.
 */
import { NO_BODY, NO_QUERY, RAW_BODY, params } from './common';

const begin = {
  type: 'object', required: ['name', 'base_id', 'vm_config', 'ports'], additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 255 },
    base_id: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    vm_config: {
      type: 'object', required: ['ramBytes', 'machine', 'cpuModel', 'nic'],
      properties: {
        ramBytes: { type: 'integer', minimum: 1 },
        machine: { type: 'string', maxLength: 255 },
        cpuModel: { type: 'string', maxLength: 1024 },
        nic: { type: 'object', required: ['mac'], properties: { mac: { type: 'string', pattern: '^([0-9a-f]{2}:){5}[0-9a-f]{2}$' } } },
      },
    },
    ports: { type: 'array', maxItems: 64, items: { type: 'integer', minimum: 1, maximum: 65535 } },
    flavor_id: { type: 'string', maxLength: 255 },
    metadata: { type: 'object', maxProperties: 128, additionalProperties: { type: 'string', maxLength: 255 } },
  },
} as const;

const COUNT = { type: 'integer', minimum: 0 } as const;
const report = {
  type: 'object', required: ['report'], additionalProperties: false,
  properties: {
    report: {
      type: 'object',
      properties: {
        total_ms: COUNT, downtime_ms: COUNT, bytes_sent: COUNT, rounds: COUNT,
        source: { type: 'string', maxLength: 255 }, source_server_id: { type: 'string', maxLength: 255 },
      },
    },
  },
} as const;

const SESSION = params('sid');

export const handoffSchemas = {
  begin: { querystring: NO_QUERY, body: { type: 'object', required: ['handoff'], additionalProperties: false, properties: { handoff: begin } } },
  round: { querystring: NO_QUERY, params: params('sid', ['n', { type: 'string', pattern: '^[0-9]{1,7}$' }]), body: RAW_BODY },
  finish: { querystring: NO_QUERY, params: SESSION, body: NO_BODY },
  /** The source's "still here" between requests. */
  heartbeat: { querystring: NO_QUERY, params: SESSION, body: NO_BODY },
  status: { querystring: NO_QUERY, params: SESSION },
  report: { querystring: NO_QUERY, params: SESSION, body: report },
  abort: { querystring: NO_QUERY, params: SESSION, body: NO_BODY },
};
