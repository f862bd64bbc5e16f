/** xz streams for tests: a stream whose LZMA2 dictionary size is rewritten (to test the decoder's memory limit). */
import { strict as assert } from 'assert';

/** Rewrites the LZMA2 dictionary-size byte of the first block header of an xz stream (and the header's CRC32). */
export function patchDictionary(xz: Buffer, code: number): Buffer {
  const out = Buffer.from(xz);
  const start = 12; // after the stream header
  const size = (out[start] + 1) * 4;
  const header = out.subarray(start, start + size);
  const at = header.indexOf(Buffer.from([0x21, 0x01]), 2); // LZMA2 filter id, 1 property byte
  assert.ok(at > 0, 'LZMA2 filter flags found');
  header[at + 2] = code;
  header.writeUInt32LE(crc32(header.subarray(0, size - 4)), size - 4);
  return out;
}

function crc32(b: Buffer): number {
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
