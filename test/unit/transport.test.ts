/**
 * The client transport against real HTTPS servers on 127.0.0.1 with certificates made for the
 * test: a CA and the certificates it signs, an expired one, one for another name, self-signed ones.
 */
import { strict as assert } from 'assert';
import * as https from 'https';
import * as http from 'http';
import type { AddressInfo } from 'net';
import { certificateSerial, makeCertificate, type MadeCertificate } from '../../sandbox/cloudlet/certificate';
import { CertificateError, fetchFailure, hostKey, normalizeFingerprint, transportFetch, withPin } from '../../sandbox/client/transport';
import { isCloudletError } from '../../sandbox/common/errors';

const DAY = 86_400_000;

async function serve(cert: MadeCertificate): Promise<{ url: string; close(): Promise<void> }> {
  const s = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"ok":true}'); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: () => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); }),
  };
}

async function refusal(p: Promise<unknown>): Promise<CertificateError> {
  try { await p; } catch (e) {
    assert.ok(e instanceof CertificateError, `expected a CertificateError, got ${String(e)}`);
    return e;
  }
  assert.fail('the connection was accepted');
}

describe('client transport (TLS trust)', () => {
  let ca: MadeCertificate;
  let otherCa: MadeCertificate;
  const issued = (o: Partial<Parameters<typeof makeCertificate>[0]> = {}) =>
    makeCertificate({ commonName: 'cloudlet', ipAddresses: ['127.0.0.1'], issuer: { certPem: ca.certPem, keyPem: ca.keyPem }, ...o });

  before(async () => {
    ca = await makeCertificate({ commonName: 'Test CA', isCa: true });
    otherCa = await makeCertificate({ commonName: 'Other CA', isCa: true });
  });

  it('accepts a certificate its CA signed, and refuses it under another CA or the system store', async () => {
    const cert = await issued();
    const s = await serve(cert);
    try {
      const res = await transportFetch(`${s.url}/`, {}, { ca: ca.certPem });
      assert.deepEqual(await res.json(), { ok: true });

      const wrong = await refusal(transportFetch(`${s.url}/`, {}, { ca: otherCa.certPem }));
      assert.equal(wrong.problem, 'unknown-issuer');
      assert.equal(wrong.code, 'Untrusted');
      assert.equal(wrong.presented?.fingerprint, cert.fingerprint, 'the error shows the presented certificate');
      assert.match(wrong.message, new RegExp(`not signed by a CA this client trusts \\(SHA-256 fingerprint ${cert.fingerprint}\\)`));

      const system = await refusal(transportFetch(`${s.url}/`));
      assert.equal(system.problem, 'unknown-issuer');
      // The CA together with the system store (what a daemon uses for its peers) accepts it.
      assert.equal((await transportFetch(`${s.url}/`, {}, { ca: ca.certPem, alsoSystem: true })).status, 200);
    } finally { await s.close(); }
  });

  it('refuses an expired certificate and one for another address', async () => {
    const expired = await issued({ notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    let s = await serve(expired);
    try {
      const e = await refusal(transportFetch(`${s.url}/`, {}, { ca: ca.certPem }));
      assert.equal(e.problem, 'expired');
      assert.match(e.message, /expired on /);
    } finally { await s.close(); }

    s = await serve(await issued({ ipAddresses: ['127.0.0.9'], dnsNames: ['elsewhere.example'] }));
    try {
      const e = await refusal(transportFetch(`${s.url}/`, {}, { ca: ca.certPem }));
      assert.equal(e.problem, 'wrong-name');
      assert.match(e.message, /127\.0\.0\.9/);
    } finally { await s.close(); }
  });

  it('a pinned fingerprint accepts that self-signed certificate only, and refuses a changed one loudly', async () => {
    const first = await makeCertificate({ commonName: 'self', ipAddresses: ['127.0.0.1'] });
    const s1 = await serve(first);
    const port = new URL(s1.url).port;
    try {
      const res = await transportFetch(`${s1.url}/`, {}, { pins: { [`127.0.0.1:${port}`]: first.fingerprint.replace(/:/g, '').toLowerCase() } });
      assert.equal(res.status, 200);
    } finally { await s1.close(); }

    // The same address now presents another certificate (a new key, or someone in between).
    const second = await makeCertificate({ commonName: 'self', ipAddresses: ['127.0.0.1'] });
    const s2 = https.createServer({ cert: second.certPem, key: second.keyPem }, (_q, r) => r.end('{}'));
    await new Promise<void>((r) => s2.listen(Number(port), '127.0.0.1', r));
    try {
      const e = await refusal(transportFetch(`https://127.0.0.1:${port}/`, {}, { pins: { [`127.0.0.1:${port}`]: first.fingerprint } }));
      assert.equal(e.problem, 'changed');
      assert.equal(e.pinned, first.fingerprint);
      assert.equal(e.presented?.fingerprint, second.fingerprint);
      assert.match(e.message, /has CHANGED since it was trusted/);
      // A pin is exclusive: even a certificate the trusted CA signed is not the pinned one.
      assert.ok(isCloudletError(e, 'Untrusted'));
    } finally { await new Promise((r) => { s2.closeAllConnections(); s2.close(r); }); }
  });

  it('pins are per host: a pinned host needs its certificate, the others are verified against the CAs', async () => {
    const self = await makeCertificate({ commonName: 'self', ipAddresses: ['127.0.0.1'] });
    const [pinned, signed] = [await serve(self), await serve(await issued())];
    try {
      const trust = { ca: ca.certPem, pins: { [hostKey(pinned.url)]: self.fingerprint } };
      assert.equal((await transportFetch(`${pinned.url}/`, {}, trust)).status, 200);
      assert.equal((await transportFetch(`${signed.url}/`, {}, trust)).status, 200, 'the CA-signed host is not affected by the other host\'s pin');
      // The same pin on the signed host: its (valid, CA-signed) certificate is not the pinned one.
      const e = await refusal(transportFetch(`${signed.url}/`, {}, withPin({ ca: ca.certPem }, signed.url, self.fingerprint)));
      assert.equal(e.problem, 'changed');
      assert.equal(hostKey('https://[::1]/x'), '::1:443');
      assert.equal(hostKey('https://Example.ORG:8774/'), 'example.org:8774');
    } finally { await pinned.close(); await signed.close(); }
  });

  it('says when plain HTTP meets an HTTPS port and HTTPS meets a plain one', async () => {
    const s = await serve(await issued());
    try {
      const e = await transportFetch(s.url.replace('https:', 'http:') + '/').then(() => undefined, (x: unknown) => x);
      assert.ok(e, 'plain HTTP to a TLS port fails');
      assert.match(fetchFailure(e, s.url.replace('https:', 'http:')), /does it speak HTTPS/);
    } finally { await s.close(); }
    const plain = http.createServer((_q, r) => r.end('x'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(plain.address() as AddressInfo).port}/`;
      const e = await transportFetch(url).then(() => undefined, (x: unknown) => x);
      assert.ok(e);
      assert.match(fetchFailure(e, url), /does not speak TLS/);
    } finally { await new Promise((r) => { plain.closeAllConnections(); plain.close(r); }); }
  });

  it('certificate serials are positive with no leading zero byte, so OpenSSL never refuses their padding', () => {
    // The random bytes that made 1 certificate in 512 unreadable: 0x00 then a byte under 0x80.
    for (const first of [Buffer.from([0x00, 0x01]), Buffer.from([0x80, 0x00]), Buffer.from([0xff, 0xff])]) {
      const s = certificateSerial(Buffer.concat([first, Buffer.alloc(14, 7)]));
      assert.equal(s.length, 16);
      assert.ok(s[0] > 0 && s[0] < 0x80, `first byte ${s[0]}`);
    }
  });

  it('normalizes fingerprints and rejects what is not one', () => {
    const hex = 'ab'.repeat(32);
    const want = Array(32).fill('AB').join(':');
    assert.equal(normalizeFingerprint(hex), want);
    assert.equal(normalizeFingerprint(`sha256 Fingerprint=${want}`), want);
    assert.equal(normalizeFingerprint(`SHA256:${want.toLowerCase()}`), want);
    assert.throws(() => normalizeFingerprint('ab:cd'), /not a SHA-256 certificate fingerprint/);
    assert.throws(() => normalizeFingerprint('zz'.repeat(32)), /not a SHA-256/);
  });
});
