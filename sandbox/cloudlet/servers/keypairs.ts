/**
 * Nova key pairs (os-keypairs): per user, by name. A key given is imported (OpenSSH public key);
 * without one an RSA pair is made and its private key returned once, as Nova 2.1 does. Servers here
 * are resumed from a memory snapshot, not booted with cloud-init, so a key pair is recorded, listed
 * and shown but not injected into a guest.
 */
import * as crypto from 'crypto';
import { promisify } from 'util';

const generateKeyPair = promisify(crypto.generateKeyPair);
import type BetterSqlite3 from 'better-sqlite3';
import { CloudletError } from '../../common/errors';

export interface Keypair { name: string; userId: string; publicKey: string; fingerprint: string; type: 'ssh'; createdAt: string }

export function migrateKeypairs(db: BetterSqlite3.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS keypairs (user_id TEXT NOT NULL, name TEXT NOT NULL, public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (user_id, name))`);
}

/** SSH wire encoding: a uint32 length, then the bytes. */
function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** An unsigned big integer as SSH's mpint (a leading zero when the top bit is set). */
function mpint(b: Buffer): Buffer {
  return sshString(b[0] & 0x80 ? Buffer.concat([Buffer.alloc(1), b]) : b);
}

/** The key blob of an OpenSSH public key line ("ssh-rsa AAAA... comment"), checked to be one. */
export function publicKeyBlob(line: string): Buffer {
  const m = /^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-dss) ([A-Za-z0-9+/]+={0,2})(?: [^\r\n]*)?$/.exec(line.trim());
  if (!m) throw new CloudletError('BadInput', 'Keypair data is invalid: public_key must be an OpenSSH public key line ("ssh-ed25519 AAAA... comment")');
  const blob = Buffer.from(m[2], 'base64');
  const typeLen = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (typeLen <= 0 || blob.subarray(4, 4 + typeLen).toString('ascii') !== m[1]) {
    throw new CloudletError('BadInput', `Keypair data is invalid: the key data does not hold a ${m[1]} key`);
  }
  return blob;
}

/** Nova's fingerprint of an ssh key: MD5 of the blob, colon-separated hex. */
export function fingerprintOf(blob: Buffer): string {
  return crypto.createHash('md5').update(blob).digest('hex').replace(/(..)(?!$)/g, '$1:');
}

/** A new RSA pair: the OpenSSH public key line and the private key in PEM (PKCS#1, what ssh reads). */
export async function generateRsaPair(comment: string): Promise<{ publicKey: string; privateKey: string }> {
  // Off the event loop: a 2048-bit RSA pair takes tens of ms, and a loop of creates must not stall the daemon.
  const { publicKey, privateKey } = await generateKeyPair('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' }) as { n: string; e: string };
  const blob = Buffer.concat([sshString(Buffer.from('ssh-rsa')), mpint(Buffer.from(jwk.e, 'base64url')), mpint(Buffer.from(jwk.n, 'base64url'))]);
  return { publicKey: `ssh-rsa ${blob.toString('base64')} ${comment}`, privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() };
}

type Row = { user_id: string; name: string; public_key: string; fingerprint: string; created_at: string };
const fromRow = (r: Row): Keypair => ({ name: r.name, userId: r.user_id, publicKey: r.public_key, fingerprint: r.fingerprint, type: 'ssh', createdAt: r.created_at });

export class KeypairStore {
  constructor(private db: BetterSqlite3.Database) { migrateKeypairs(db); }

  list(userId: string): Keypair[] {
    return (this.db.prepare('SELECT * FROM keypairs WHERE user_id = ? ORDER BY name').all(userId) as Row[]).map(fromRow);
  }

  get(userId: string, name: string): Keypair {
    const r = this.db.prepare('SELECT * FROM keypairs WHERE user_id = ? AND name = ?').get(userId, name) as Row | undefined;
    if (!r) throw new CloudletError('NotFound', `Keypair ${name} not found for user ${userId}`);
    return fromRow(r);
  }

  /**
   * Imports `publicKey`, or makes a pair; the private key is in the answer only when made here. At
   * most `max` pairs per user: checked with the insert in one synchronous step, after the key is made.
   */
  async create(userId: string, name: string, publicKey: string | undefined, max: number): Promise<Keypair & { privateKey?: string }> {
    this.refuse(userId, name, max);
    const made = publicKey === undefined ? await generateRsaPair(`Generated-by-Nova`) : undefined;
    const line = (publicKey ?? made!.publicKey).trim();
    const fingerprint = fingerprintOf(publicKeyBlob(line));
    this.refuse(userId, name, max);
    this.db.prepare('INSERT INTO keypairs VALUES (?, ?, ?, ?, ?)').run(userId, name, line, fingerprint, new Date().toISOString());
    return { ...this.get(userId, name), ...(made ? { privateKey: made.privateKey } : {}) };
  }

  private refuse(userId: string, name: string, max: number): void {
    if (this.db.prepare('SELECT 1 FROM keypairs WHERE user_id = ? AND name = ?').get(userId, name)) {
      throw new CloudletError('Conflict', `Key pair '${name}' already exists.`);
    }
    if (this.list(userId).length >= max) throw new CloudletError('Forbidden', `Quota exceeded, too many key pairs (at most ${max}).`);
  }

  delete(userId: string, name: string): void {
    this.get(userId, name);
    this.db.prepare('DELETE FROM keypairs WHERE user_id = ? AND name = ?').run(userId, name);
  }
}
