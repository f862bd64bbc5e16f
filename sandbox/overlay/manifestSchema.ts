/**
 * The one JSON Schema of an overlay manifest. validateManifest (format.ts) runs it before anything
 * reads a field, wherever a manifest comes from (a file, an OCI config blob, an HTTP overlay_url):
 * every field typed, bounded and named in the refusal, no field the reader does not know. What a
 * schema cannot say (runs inside the images and ascending, breakdown totals equal to the segments)
 * validateManifest checks right after. A new manifest field goes here first.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import { CloudletError } from '../common/errors';
import { describeSchemaError } from '../common/schemaError';
import { CHUNK_SIZE, ENCODING_NAMES, FORMAT_NAME, FORMAT_VERSION, LIMITS, MAX_CHAIN_DEPTH, SEGMENT_MAX_RECORDS, TARGETS } from './formatConstants';

const uint = (maximum = Number.MAX_SAFE_INTEGER) => ({ type: 'integer', minimum: 0, maximum });
/** An object of exactly these fields, all required but `optional`. */
const obj = (properties: Record<string, unknown>, optional: string[] = []) => ({
  type: 'object', additionalProperties: false, properties,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
});

/** Built on first use (the schema is large and most processes never read a manifest). */
export function manifestSchema(): Record<string, unknown> {
  const targetBreakdown = obj({
    chunks: uint(),
    encodings: obj(Object.fromEntries(ENCODING_NAMES.map((n) => [n, uint()]))),
    selfFrom: obj(Object.fromEntries(TARGETS.map((t) => [t, uint()]))),
    payloadBytes: uint(), segmentRawBytes: uint(), compressedBytes: uint(), segments: uint(LIMITS.segments),
  });
  // The VM config an overlay carries: its base's (sandbox/qemu/vmconfig.ts VmConfig) plus the back-end's ports.
  const vmConfig = obj({
    // QEMU option values: no ',', '=' or spaces (buildQemuArgs checks again where it splices them).
    machine: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
    cpuModel: { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[^\\s=]+$' },
    ramBytes: { type: 'integer', minimum: CHUNK_SIZE, maximum: LIMITS.ramBytes, multipleOf: CHUNK_SIZE },
    vcpus: { type: 'integer', minimum: 1, maximum: 1024 },
    nic: obj({ model: { const: 'virtio-net-pci' }, mac: { type: 'string', pattern: '^([0-9a-f]{2}:){5}[0-9a-f]{2}$' } }),
    kernel: obj({ append: { type: 'string', maxLength: 4096 } }),
    ports: { type: 'array', maxItems: 64, uniqueItems: true, items: { type: 'integer', minimum: 1, maximum: 65535 } },
  }, ['kernel', 'ports']);
  return obj({
    format: { const: FORMAT_NAME },
    version: { const: FORMAT_VERSION },
    baseId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    chunkSize: { const: CHUNK_SIZE },
    ram: obj({ size: { type: 'integer', minimum: CHUNK_SIZE, maximum: LIMITS.ramBytes, multipleOf: CHUNK_SIZE } }),
    disk: obj({ size: uint(LIMITS.diskBytes) }),
    base: obj({ ramSize: uint(LIMITS.ramBytes), diskSize: uint(LIMITS.diskBytes) }),
    // zstd: every segment stored on its own; xz: segments stored in compression units (the wire profile).
    // (units present exactly for xz, xz level 0..9: validateManifest.)
    compression: obj({
      algorithm: { enum: ['zstd', 'xz'] }, level: { type: 'integer', minimum: -131072, maximum: 22 },
      units: {
        type: 'array', minItems: 1, maxItems: LIMITS.segments,
        items: compressionUnitSchema(),
      },
    }, ['units']),
    vmConfig,
    segments: { type: 'array', minItems: 1, maxItems: LIMITS.segments, items: segmentEntrySchema() },
    breakdown: obj({ ram: targetBreakdown, disk: targetBreakdown, deviceStateBytes: uint(LIMITS.segmentRawBytes) }),
    // A child overlay: its records are against this parent overlay's launch images (parentChain.ts).
    parent: obj({ id: { type: 'string', pattern: '^[0-9a-f]{64}$' }, depth: { type: 'integer', minimum: 1, maximum: MAX_CHAIN_DEPTH } }),
  }, ['parent']);
}

/** One compression unit of the wire profile (an xz manifest's, or a handoff round's that carries units). */
export function compressionUnitSchema(): Record<string, unknown> {
  return obj({
    digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' }, size: { type: 'integer', minimum: 1, maximum: LIMITS.unitBytes },
    rawSize: uint(LIMITS.unitRawBytes), segments: { type: 'integer', minimum: 1, maximum: LIMITS.segments },
  });
}

/**
 * One segment entry (digest, kind, sizes, target image and chunk runs): the same schema for an
 * overlay manifest's segments and a handoff round's (sandbox/handoff/roundHeader.ts).
 */
export function segmentEntrySchema(): Record<string, unknown> {
  // The fields first, then what each kind needs: allOf is checked in order, so a bad `kind` is
  // reported as itself rather than as the fields of the other kind.
  return {
    allOf: [
      obj({
        digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
        kind: { enum: ['chunks', 'device-state'] },
        target: { enum: TARGETS },
        size: { type: 'integer', minimum: 1, maximum: LIMITS.segmentBytes },
        rawSize: uint(LIMITS.segmentRawBytes),
        rawDigest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
        records: { type: 'integer', minimum: 1, maximum: SEGMENT_MAX_RECORDS },
        chunks: {
          type: 'array', minItems: 1, maxItems: SEGMENT_MAX_RECORDS,
          // [first chunk index, count]
          items: { type: 'array', minItems: 2, maxItems: 2, items: [uint(2 ** 32 - 1), { type: 'integer', minimum: 1, maximum: SEGMENT_MAX_RECORDS }] },
        },
      }, ['target', 'records', 'chunks', 'rawDigest']),
      // Chunk segments say which image and which chunks; the device state says neither.
      {
        type: 'object',
        if: { properties: { kind: { const: 'chunks' } } },
        then: { required: ['target', 'records', 'chunks'] },
        else: { properties: { target: false, records: false, chunks: false } },
      },
    ],
  };
}

/** Compiles a schema of this module's style (the manifest's, a handoff round header's). */
export function compileFormatSchema(schema: Record<string, unknown>): ValidateFunction {
  // strictTuples off: a chunk run is a fixed pair by minItems = maxItems = 2, not by additionalItems;
  // strictRequired off: `then` requires fields its parent schema defines.
  return new Ajv({ strict: true, strictTuples: false, strictRequired: false, allErrors: false, verbose: true }).compile(schema);
}

let check: ValidateFunction | undefined;

/** Throws BadInput naming the first field that is missing, unknown, of the wrong type or out of range. */
export function checkManifestSchema(raw: unknown): void {
  check ??= compileFormatSchema(manifestSchema());
  if (check(raw)) return;
  throw new CloudletError('BadInput', `overlay manifest: ${describeSchemaError(check.errors![0], 'the manifest')}`);
}
