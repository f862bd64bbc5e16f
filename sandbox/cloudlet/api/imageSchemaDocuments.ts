/**
 * Glance's published JSON schemas (GET /v2/schemas/image and /v2/schemas/images), which glanceclient
 * fetches before any call and validates images against (warlock). The fields are Glance 2.9's; custom
 * properties, as in Glance, are strings (`additionalProperties: {type: string}`), which is what the
 * image store keeps. The cloudlet's own properties (is_cloudlet, cloudlet_type, base_sha256_uuid, ...)
 * are such custom properties.
 */
const nullableString = (maxLength?: number) => ({ type: ['null', 'string'], ...(maxLength ? { maxLength } : {}) });
const readOnly = <T extends object>(s: T) => ({ ...s, readOnly: true });

export const IMAGE_SCHEMA = {
  name: 'image',
  properties: {
    id: { type: 'string', description: 'An identifier for the image', pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$' },
    name: { ...nullableString(255), description: 'Descriptive name for the image' },
    status: readOnly({ type: 'string', description: 'Status of the image', enum: ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'] }),
    visibility: { type: 'string', description: 'Scope of image accessibility', enum: ['community', 'public', 'private', 'shared'] },
    protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
    os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
    checksum: readOnly({ ...nullableString(32), description: 'md5 hash of image contents.' }),
    os_hash_algo: readOnly({ ...nullableString(64), description: 'Algorithm to calculate the os_hash_value' }),
    os_hash_value: readOnly({ ...nullableString(128), description: 'Hexdigest of the image contents using the algorithm specified by the os_hash_algo' }),
    owner: { ...nullableString(255), description: 'Owner of the image' },
    size: readOnly({ type: ['null', 'integer'], description: 'Size of image file in bytes' }),
    virtual_size: readOnly({ type: ['null', 'integer'], description: 'Virtual size of image in bytes' }),
    container_format: { type: ['null', 'string'], description: 'Format of the container', enum: [null, 'ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] },
    disk_format: { type: ['null', 'string'], description: 'Format of the disk', enum: [null, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'] },
    created_at: readOnly({ type: 'string', description: 'Date and time of image registration' }),
    updated_at: readOnly({ type: 'string', description: 'Date and time of the last image modification' }),
    tags: { type: 'array', description: 'List of strings related to the image', items: { type: 'string', maxLength: 255 } },
    direct_url: readOnly({ type: 'string', description: 'URL to access the image file kept in external store' }),
    min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
    min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
    self: readOnly({ type: 'string', description: 'An image self url' }),
    file: readOnly({ type: 'string', description: 'An image file url' }),
    stores: readOnly({ type: 'string', description: 'Store in which image data resides.' }),
    schema: readOnly({ type: 'string', description: 'An image schema url' }),
    locations: { type: 'array', description: 'A set of URLs to access the image file kept in external store', items: { type: 'object' } },
    description: { ...nullableString(255), is_base: false, description: 'A human-readable string describing this image.' },
    architecture: { ...nullableString(255), is_base: false, description: 'Operating system architecture' },
    os_distro: { ...nullableString(255), is_base: false, description: 'Common name of operating system distribution' },
    os_version: { ...nullableString(255), is_base: false, description: 'Operating system version as specified by the distributor' },
  },
  additionalProperties: { type: 'string' },
  links: [{ rel: 'self', href: '{self}' }, { rel: 'enclosure', href: '{file}' }, { rel: 'describedby', href: '{schema}' }],
};

export const IMAGES_SCHEMA = {
  name: 'images',
  properties: {
    images: { type: 'array', items: IMAGE_SCHEMA },
    schema: { type: 'string' },
    first: { type: 'string' },
    next: { type: 'string' },
  },
  links: [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }],
};
