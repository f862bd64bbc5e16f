/**
 * The overlay manifest's one schema (issue 11 item 9): every field of a real manifest, made
 * missing, mistyped, out of range or joined by an unknown field, is refused with a message that
 * names it, by the reader every path uses (file, OCI config blob, overlay_url head); and the CLI's
 * `overlay info` / `verify` say so instead of crashing on what they read.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { fieldName } from '../../sandbox/common/schemaError';
import { canonicalJson, createOverlay, overlayInfo, OverlayReader, parseManifest, SegmentCompressor } from '../../sandbox/overlay';
import { encodeContainerHeader, type OverlayManifest } from '../../sandbox/overlay/format';
import { makePair } from './helpers/generatedImages';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = Array<string | number>;

/** Every path of a JSON value (objects and arrays, not the root); only the first two items of a list. */
function paths(v: Json, at: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(v)) v.slice(0, 2).forEach((x, i) => { out.push([...at, i], ...paths(x, [...at, i])); });
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push([...at, k], ...paths(x, [...at, k]));
  return out;
}
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const parentOf = (root: Json, p: Path) => p.slice(0, -1).reduce<any>((o, k) => o[k], root);
const nameOf = (p: Path) => fieldName(p.map((k) => `/${k}`).join(''), 'the manifest');
const OPTIONAL = new Set(['vmConfig.kernel', 'vmConfig.ports']);
// Content names are optional: manifests written before issue 13 have none (their ID is the manifest's hash).
const isOptional = (name: string) => OPTIONAL.has(name) || /^segments\[\d+\]\.rawDigest$/.test(name);

describe('overlay manifest: one complete schema, refusals name the field', function () {
  this.timeout(120_000);
  let tmp: string;
  let file: string;
  let good: OverlayManifest;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'manifest-schema-'));
    const pair = makePair(path.join(tmp, 'pair'), { ramPages: 256, diskChunks: 2048 });
    const compressor = new SegmentCompressor(1);
    try {
      file = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'out'), compressor })).path;
    } finally { await compressor.close(); }
    const r = OverlayReader.open(file);
    good = JSON.parse(r.manifestBytes.toString()) as OverlayManifest;
    r.close();
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const refusal = (m: unknown): string => {
    try { parseManifest(Buffer.from(JSON.stringify(m))); } catch (e) {
      assert.ok(isCloudletError(e), String(e));
      assert.ok(e.code === 'BadInput' || e.code === 'Corrupt', e.message);
      return e.message;
    }
    assert.fail(`accepted: ${JSON.stringify(m).slice(0, 300)}`);
  };

  it('accepts the manifest the writer made, and overlay info reads every figure of it', () => {
    const { manifest } = parseManifest(Buffer.from(JSON.stringify(good)));
    const info = overlayInfo(manifest);
    assert.equal(info.ram.changedChunks, good.breakdown.ram.chunks);
    assert.equal(info.disk.segments, good.breakdown.disk.segments);
  });

  it('breakdown: {} is refused naming breakdown.ram (it used to pass and crash info/verify)', () => {
    assert.match(refusal({ ...clone(good), breakdown: {} }), /^overlay manifest: breakdown\.ram is missing$/);
  });

  it('every field missing, of the wrong type, or beside an unknown field: refused naming it', () => {
    const all = paths(good as unknown as Json);
    assert.ok(all.length > 60, `only ${all.length} paths`);
    let cases = 0;
    for (const p of all) {
      const name = nameOf(p);
      const key = p[p.length - 1];
      const value = parentOf(good as unknown as Json, p)[key] as Json;
      // Missing (object fields that are not optional).
      if (typeof key === 'string' && !isOptional(name)) {
        const m = clone(good) as unknown as Json;
        delete parentOf(m, p)[key];
        assert.ok(refusal(m).includes(name), `${name} missing: ${refusal(m)}`);
        cases++;
      }
      // Wrong type: a string for anything that is not one, an object for anything that is not one.
      for (const wrong of [typeof value === 'string' ? 12345 : 'abc', Array.isArray(value) || typeof value !== 'object' ? {} : []] as Json[]) {
        const m = clone(good) as unknown as Json;
        parentOf(m, p)[key] = wrong;
        const msg = refusal(m);
        assert.ok(msg.includes(name), `${name} = ${JSON.stringify(wrong)}: ${msg}`);
        cases++;
      }
      // Unknown field beside the known ones.
      if (value && typeof value === 'object' && !Array.isArray(value)) {
        const m = clone(good) as unknown as Json;
        (parentOf(m, p)[key] as Record<string, Json>).surprise = 1;
        assert.match(refusal(m), new RegExp(`${name.replace(/[.[\]]/g, '\\$&')}\\.surprise is not a known field`));
        cases++;
      }
    }
    const top = clone(good) as unknown as Record<string, Json>;
    top.extra = {};
    assert.match(refusal(top), /^overlay manifest: extra is not a known field$/);
    assert.ok(cases > 150, `${cases} cases`);
  });

  it('values out of range and totals that contradict the segments are refused naming the field', () => {
    const cases: Array<[string, (m: OverlayManifest) => void]> = [
      ['vmConfig.vcpus', (m) => { m.vmConfig.vcpus = 4096; }],
      ['vmConfig.ramBytes', (m) => { m.vmConfig.ramBytes += 4096; }],
      ['vmConfig.machine', (m) => { m.vmConfig.machine = 'pc,accel=kvm'; }],
      ['vmConfig.ports[0]', (m) => { m.vmConfig.ports = [70000]; }],
      ['ram.size', (m) => { m.ram.size = 4097; }],
      ['segments[0].size', (m) => { m.segments[0].size = 0; }],
      ['segments[0].chunks[0][1]', (m) => { m.segments[0].chunks![0][1] = 0; }],
      ['segments[0].chunks', (m) => { m.segments[0].chunks = []; }],
      ['breakdown.ram.chunks', (m) => { m.breakdown.ram.chunks += 1; }],
      ['breakdown.disk.encodings', (m) => { m.breakdown.disk.encodings.raw += 1; m.breakdown.disk.payloadBytes += 4096; }],
      ['breakdown.disk.segmentRawBytes', (m) => { m.breakdown.disk.segmentRawBytes -= 1; }],
      ['breakdown.ram.selfFrom', (m) => { m.breakdown.ram.selfFrom.disk += 1; }],
      ['breakdown.deviceStateBytes', (m) => { m.breakdown.deviceStateBytes += 1; }],
      ['segments[' + 0 + '].target', (m) => { const ds = m.segments.findIndex((s) => s.kind === 'device-state'); m.segments = [m.segments[ds], ...m.segments.filter((_, i) => i !== ds)]; m.segments[0].target = 'ram'; }],
    ];
    for (const [field, change] of cases) {
      const m = clone(good);
      change(m);
      const msg = refusal(m);
      assert.ok(msg.includes(field), `${field}: ${msg}`);
    }
  });

  it('overlay info and verify (the CLI) print the refusal naming the field, not a TypeError', () => {
    const bad = { ...clone(good), breakdown: {} };
    const mb = Buffer.from(canonicalJson(bad));
    const f = path.join(tmp, 'empty-breakdown.overlay');
    const whole = fs.readFileSync(file);
    const r = OverlayReader.open(file);
    const segments = whole.subarray(16 + r.manifestBytes.length);
    r.close();
    fs.writeFileSync(f, Buffer.concat([encodeContainerHeader(mb), mb, segments]));
    const cli = path.resolve(__dirname, '../../sandbox/cli/main.ts');
    for (const cmd of ['info', 'verify']) {
      const res = spawnSync(process.execPath, ['--import', 'tsx', cli, 'overlay', cmd, f], { encoding: 'utf8', env: { ...process.env, CLOUDLET_HOME: tmp } });
      assert.equal(res.status, 2, `${cmd}: ${res.stderr}`);
      assert.match(res.stderr, /breakdown\.ram is missing/, cmd);
      assert.doesNotMatch(res.stderr, /Cannot read properties/, cmd);
    }
  });
});
