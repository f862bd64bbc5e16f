/**
 * Which addresses a URL a caller gave may reach (overlay_url): a list of ranges from the daemon's
 * config, checked on the address actually connected to (after DNS, on every redirect hop), so a
 * name that resolves to an internal address, or a rebinding DNS answer, gets nowhere.
 *
 * Entries: CIDR ranges ("10.1.0.0/16", "fd00::/8"), single addresses, or the words
 *   public      every address that is not special-purpose (IANA registries: private, loopback,
 *               link-local, CGNAT, documentation, multicast, reserved ...)
 *   loopback    127.0.0.0/8, ::1
 *   private     10/8, 172.16/12, 192.168/16, fc00::/7
 *   link-local  169.254/16, fe80::/10 (cloud metadata services live here)
 */
import * as dns from 'dns';
import * as net from 'net';
import type { buildConnector } from 'undici';
import { CloudletError } from './errors';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];
const PRIVATE = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'];
const LINK_LOCAL = ['169.254.0.0/16', 'fe80::/10'];
/** Special-purpose ranges (RFC 6890 and successors): what "public" leaves out. */
const SPECIAL = [
  ...LOOPBACK, ...PRIVATE, ...LINK_LOCAL,
  '0.0.0.0/8', '100.64.0.0/10', '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '198.18.0.0/15',
  '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
  '::/128', '64:ff9b::/96', '64:ff9b:1::/48', '100::/64', '2001::/23', '2001:db8::/32',
  '2002::/16', 'ff00::/8',
];
const WORDS: Record<string, string[]> = { loopback: LOOPBACK, private: PRIVATE, 'link-local': LINK_LOCAL };

export const DEFAULT_OVERLAY_NETWORKS = ['public', 'loopback'];

function addRange(list: net.BlockList, cidr: string, where: string): void {
  const [addr, bits] = cidr.split('/');
  const type = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : undefined;
  const max = type === 'ipv4' ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!type || !Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) {
    throw new CloudletError('BadInput', `${where}: "${cidr}" is not an address range (CIDR such as 10.0.0.0/8, or public, loopback, private, link-local)`);
  }
  list.addSubnet(addr, prefix, type);
}

/**
 * An IPv4-mapped IPv6 address (::ffff:10.0.0.1, or ::ffff:a00:1 as URLs write it) is its IPv4
 * address. (A BlockList range of ::ffff:0:0/96 would also match every IPv4 address, so mapped
 * addresses are unwrapped here rather than listed.)
 */
function plain(ip: string): { ip: string; type: 'ipv4' | 'ipv6' } {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (dotted) return { ip: dotted[1], type: 'ipv4' };
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (hex) {
    const [hi, lo] = [parseInt(hex[1], 16), parseInt(hex[2], 16)];
    return { ip: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, type: 'ipv4' };
  }
  return { ip, type: net.isIPv4(ip) ? 'ipv4' : 'ipv6' };
}

export class AddressPolicy {
  private readonly allowed = new net.BlockList();
  private readonly special = new net.BlockList();
  private readonly publicToo: boolean;

  /** `where` names the setting in errors (e.g. "config: overlay_url_networks"). */
  constructor(readonly entries: string[], where = 'address ranges') {
    for (const c of SPECIAL) addRange(this.special, c, 'built-in');
    this.publicToo = entries.includes('public');
    for (const e of entries) {
      if (e === 'public') continue;
      for (const c of WORDS[e] ?? [e]) addRange(this.allowed, c, where);
    }
  }

  allows(address: string): boolean {
    if (!net.isIP(address)) return false;
    const { ip, type } = plain(address);
    if (this.allowed.check(ip, type)) return true;
    return this.publicToo && !this.special.check(ip, type);
  }

  /**
   * A dns.lookup for net/tls.connect (undici's `connect.lookup`): resolves as usual, then refuses
   * when any resolved address is outside the policy (no picking the one good answer of a mixed set).
   */
  readonly lookup: net.LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as dns.LookupAddress[];
      const bad = list.find((a) => !this.allows(a.address));
      if (bad || !list.length) return callback(refused(hostname), '', 0);
      if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };

  /** Refuses a host that is an address literal outside the policy (connect skips lookup for those). */
  checkLiteral(hostname: string): void {
    const h = hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(h) && !this.allows(h)) throw refused(h);
  }

  /**
   * An undici connector that refuses a literal address outside the policy before `inner` runs;
   * `inner` must be built with `lookup: policy.lookup`, which checks what names resolve to.
   */
  guard(inner: buildConnector.connector): buildConnector.connector {
    return (opts, callback) => {
      try { this.checkLiteral(opts.hostname); } catch (e) { callback(e as Error, null); return; }
      inner(opts, callback);
    };
  }
}

/** The refusal, as a connection error (the connector's callback takes an Error). */
function refused(host: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`${host} is outside the address ranges this daemon may reach`);
  e.code = 'EADDRNOTALLOWED';
  return e;
}

/** Whether an error (or its causes) is this policy's refusal. */
export function isAddressRefusal(e: unknown): boolean {
  for (let x = e as { code?: unknown; cause?: unknown } | undefined, n = 0; x && n < 5; x = x.cause as typeof x, n++) {
    if (x.code === 'EADDRNOTALLOWED') return true;
  }
  return false;
}
