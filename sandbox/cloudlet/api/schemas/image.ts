/**
 * Schemas of the Glance routes (api/image.ts), after Glance's own image schema: core fields typed,
 * every other property a string (Glance: `additionalProperties: {type: string}`), so a value is
 * never converted on its way to the store. An update is JSON Patch; each path's value has the type
 * of its field (visibility is an enum: `["public"]` is refused, not compared and then stringified).
 */
import { NO_BODY, NO_QUERY, RAW_BODY, ID, DIGITS, jsonPatch, params, query } from './common';

export const VISIBILITIES = ['public', 'private', 'shared', 'community'];
export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'];
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'];

const SIZE = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const PROPERTY = { type: 'string', maxLength: 255 } as const;
/** The fields with their own type; any other key is a custom property (a string). */
const FIELDS = {
  id: { type: 'string', maxLength: 64 },   // a UUID: the store says so in its refusal
  name: { type: ['string', 'null'], maxLength: 255 },
  visibility: { type: 'string', enum: VISIBILITIES },
  protected: { type: 'boolean' },
  os_hidden: { type: 'boolean' },
  disk_format: { type: ['string', 'null'], enum: [...DISK_FORMATS, null] },
  container_format: { type: ['string', 'null'], enum: [...CONTAINER_FORMATS, null] },
  min_disk: SIZE,
  min_ram: SIZE,
  tags: { type: 'array', maxItems: 128, items: PROPERTY },
  owner: { type: 'string', maxLength: 255 },
} as const;

/** Glance's default image_property_quota is 128 custom properties. */
export const MAX_IMAGE_PROPERTIES = 128;

const createBody = {
  type: 'object', properties: FIELDS, additionalProperties: PROPERTY,
  maxProperties: MAX_IMAGE_PROPERTIES + Object.keys(FIELDS).length, propertyNames: { minLength: 1, maxLength: 255 },
} as const;

const typed = Object.entries(FIELDS).filter(([k]) => k !== 'id').map(([k, v]): [string, object] => [`/${k}`, v]);
const patchBody = jsonPatch({
  ops: ['add', 'replace', 'remove'],
  // One top-level key: no nested paths, and no names that are JavaScript object internals.
  pathPattern: '^/(?!__proto__$|constructor$|prototype$)[^/]{1,255}$',
  values: [...typed, [/^\/(?!(id|name|visibility|protected|os_hidden|disk_format|container_format|min_disk|min_ram|tags|owner)$)/, PROPERTY]],
  maxOps: MAX_IMAGE_PROPERTIES,
});

const IMAGE = params('id');
const TAG = params('id', ['tag', { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/]+$' }]);

export const imageSchemas = {
  versions: { querystring: NO_QUERY },
  /** Filters on any field or property, plus Glance's paging and sorting. */
  list: { querystring: query({ limit: DIGITS, marker: ID, sort: { type: 'string', maxLength: 255 }, sort_key: { type: 'string', maxLength: 255 }, sort_dir: { enum: ['asc', 'desc'] } }, true) },
  create: { querystring: NO_QUERY, body: createBody },
  show: { querystring: NO_QUERY, params: IMAGE },
  update: { querystring: NO_QUERY, params: IMAGE, body: patchBody },
  remove: { querystring: NO_QUERY, params: IMAGE, body: NO_BODY },
  upload: { querystring: NO_QUERY, params: IMAGE, body: RAW_BODY },
  download: { querystring: NO_QUERY, params: IMAGE },
  /**
   * PUT/DELETE /v2/images/{id}/tags/{tag}: a tag is 1-255 characters without '/' (it is a path segment).
   * glanceclient sends both as an empty application/octet-stream, which is no body (daemon.ts).
   */
  tag: { querystring: NO_QUERY, params: TAG, body: NO_BODY },
  /** GET /v2/schemas/image(s). */
  schemaDocument: { querystring: NO_QUERY },
};
