/**
 * Making X.509 certificates (ECDSA P-256, SHA-256) with pkijs over Node's WebCrypto: the daemon's
 * `--tls-self-signed` certificate, and the CAs, signed, expired and wrong certificates the tests use.
 * Node itself reads certificates (crypto.X509Certificate) but cannot write them.
 */
import * as crypto from 'crypto';
import * as net from 'net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

export interface CertificateRequest {
  commonName: string;
  /** Subject alternative names: DNS names and IP addresses (v4 or v6). */
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** A CA certificate (may sign others), not a server certificate. */
  isCa?: boolean;
  /** Signed by this CA; default: self-signed. */
  issuer?: { certPem: string; keyPem: string };
  /** Sign with this key (PEM, EC P-256) instead of a new one; e.g. a renewal keeping its key. */
  keyPem?: string;
}

export interface MadeCertificate { certPem: string; keyPem: string; fingerprint: string }

const OID = {
  commonName: '2.5.4.3', basicConstraints: '2.5.29.19', keyUsage: '2.5.29.15', extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17', subjectKeyId: '2.5.29.14', authorityKeyId: '2.5.29.35', serverAuth: '1.3.6.1.5.5.7.3.1',
};
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const subtle = crypto.webcrypto.subtle;
type CryptoKey = crypto.webcrypto.CryptoKey;

/** "AB:CD:…" (64 hex digits, upper case): what `openssl x509 -fingerprint -sha256` and Node print. */
export function certificateFingerprint(certPem: string): string {
  return new crypto.X509Certificate(certPem).fingerprint256;
}

/**
 * A serial number from 16 random bytes that DER encodes as they are: positive (top bit clear) and
 * with a non-zero first byte, since a leading 0x00 before a byte under 0x80 is padding OpenSSL
 * refuses ("illegal padding"; 1 random serial in 512 had it).
 */
export function certificateSerial(random: Buffer): Buffer {
  const serial = Buffer.from(random);
  serial[0] = (serial[0] & 0x7f) | 0x40;
  return serial;
}

export async function makeCertificate(req: CertificateRequest): Promise<MadeCertificate> {
  const keys = req.keyPem
    ? { privateKey: await importKey(req.keyPem), publicKey: await publicOf(req.keyPem) }
    : await subtle.generateKey(EC, true, ['sign', 'verify']);
  const issuerCert = req.issuer ? pkijs.Certificate.fromBER(pemToDer(req.issuer.certPem)) : undefined;
  const signingKey = req.issuer ? await importKey(req.issuer.keyPem) : keys.privateKey;

  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: bufferOf(certificateSerial(crypto.randomBytes(16))) });
  cert.subject.typesAndValues.push(new pkijs.AttributeTypeAndValue({ type: OID.commonName, value: new asn1js.Utf8String({ value: req.commonName }) }));
  cert.issuer = issuerCert ? issuerCert.subject : cert.subject;
  const now = Date.now();
  cert.notBefore.value = req.notBefore ?? new Date(now - 5 * 60_000);  // a little slack for clocks
  cert.notAfter.value = req.notAfter ?? new Date(now + 825 * 86_400_000);
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey);
  const spki = new Uint8Array(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView);
  const keyId = crypto.createHash('sha1').update(spki).digest();

  const ext = (extnID: string, critical: boolean, value: { toSchema(): asn1js.BaseBlock } | asn1js.BaseBlock) =>
    new pkijs.Extension({ extnID, critical, extnValue: ('toSchema' in value ? value.toSchema() : value).toBER(false) });
  const extensions = [
    ext(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: !!req.isCa })),
    // digitalSignature (bit 0); a CA also keyCertSign (5) and cRLSign (6).
    ext(OID.keyUsage, true, new asn1js.BitString({ valueHex: bufferOf(Buffer.from([req.isCa ? 0x86 : 0x80])), unusedBits: req.isCa ? 1 : 7 })),
    ext(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: bufferOf(keyId) })),
  ];
  if (!req.isCa) {
    extensions.push(ext(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: [OID.serverAuth] })));
    const names = [
      ...(req.dnsNames ?? []).map((d) => new pkijs.GeneralName({ type: 2, value: d })),
      ...(req.ipAddresses ?? []).map((ip) => new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: bufferOf(ipBytes(ip)) }) })),
    ];
    if (names.length) extensions.push(ext(OID.subjectAltName, false, new pkijs.GeneralNames({ names })));
  }
  if (issuerCert) {
    const issuerSpki = new Uint8Array(issuerCert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView);
    const issuerKeyId = crypto.createHash('sha1').update(issuerSpki).digest();
    extensions.push(ext(OID.authorityKeyId, false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: bufferOf(issuerKeyId) }) })));
  }
  cert.extensions = extensions;
  await cert.sign(signingKey, 'SHA-256', new pkijs.CryptoEngine({ crypto: crypto.webcrypto as unknown as pkijs.CryptoEngineParameters['crypto'] }));

  const certPem = derToPem('CERTIFICATE', Buffer.from(cert.toSchema(true).toBER(false)));
  const keyPem = req.keyPem ?? derToPem('PRIVATE KEY', Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey)));
  return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = crypto.createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
  return subtle.importKey('pkcs8', der, EC, false, ['sign']);
}

async function publicOf(pem: string): Promise<CryptoKey> {
  const der = crypto.createPublicKey(pem).export({ format: 'der', type: 'spki' });
  return subtle.importKey('spki', der, EC, true, ['verify']);
}

function ipBytes(ip: string): Buffer {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!net.isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  // A dotted v4 tail becomes two groups; "::" stands for as many zero groups as are missing.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const text = v4 ? ip.slice(0, v4.index) + [[1, 2], [3, 4]].map(([a, b]) => ((Number(v4[a]) << 8) | Number(v4[b])).toString(16)).join(':') : ip;
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function pemToDer(pem: string): ArrayBuffer {
  return bufferOf(Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'));
}

function derToPem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

function bufferOf(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
