/** Pure parts of the guest builders and base sources: cached stages, NoCloud seed, sizes, Debian specs. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parse } from 'yaml';
import { isCloudletError } from '../../sandbox/common/errors';
import { parseSize } from '../../sandbox/base/sources';
import { normaliseDebianSpec } from '../../sandbox/guest/debian';
import { hostnameFrom, metaData, NoCloudServer, userData, validateNoCloud } from '../../sandbox/guest/noCloud';
import { ensureStage, stageKey } from '../../sandbox/guest/stages';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJRBgjd6lRw1SJ7Kw4nqfqu7OqYTMCi9K6EknGlfBYX6 dev@laptop';

describe('guest sources', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-unit-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('cached stages', () => {
    it('a stage is built once, then taken from the cache; its key names every input', async () => {
      let builds = 0;
      const build = async (c: { out: string }) => { builds++; fs.writeFileSync(path.join(c.out, 'x'), 'made'); };
      const k = stageKey('s', 1, ['a']);
      assert.notEqual(k, stageKey('s', 1, ['b']));
      assert.notEqual(k, stageKey('s', 2, ['a']));
      const a = await ensureStage(dir, 's', k, { a: 1 }, build, { log: () => undefined });
      const b = await ensureStage(dir, 's', k, { a: 1 }, build, { log: () => undefined });
      assert.equal(builds, 1);
      assert.equal(a.cached, false);
      assert.equal(b.cached, true);
      assert.equal(fs.readFileSync(path.join(b.dir, 'x'), 'utf8'), 'made');
      assert.equal(JSON.parse(fs.readFileSync(path.join(b.dir, 'stage.json'), 'utf8')).key, k);
    });

    it('a failed or cancelled stage leaves nothing that looks complete; the next build starts it again', async () => {
      const k = stageKey('s', 1);
      const ac = new AbortController();
      await assert.rejects(ensureStage(dir, 's', k, {}, async (c) => {
        fs.writeFileSync(path.join(c.out, 'half'), 'x');
        ac.abort();
        throw new Error('interrupted');
      }, { log: () => undefined, signal: ac.signal }), /interrupted/);
      assert.deepEqual(fs.readdirSync(dir), [], 'no partial folder, no stage folder, no lock');
      // A folder left by a killed builder (its pid is gone) is removed, not trusted.
      fs.mkdirSync(path.join(dir, `s-${k}.partial-999999`));
      fs.writeFileSync(path.join(dir, `s-${k}.partial-999999`, 'half'), 'x');
      const r = await ensureStage(dir, 's', k, {}, async (c) => { fs.writeFileSync(path.join(c.out, 'whole'), 'y'); }, { log: () => undefined });
      assert.deepEqual(fs.readdirSync(dir).sort(), [`s-${k}`]);
      assert.deepEqual(fs.readdirSync(r.dir).sort(), ['stage.json', 'whole']);
    });
  });

  describe('Debian specs', () => {
    it('normalises packages and refuses what is not a suite, a package name or a disk size', () => {
      const s = normaliseDebianSpec({ suite: 'bookworm', packages: ['python3-flask', 'curl', 'curl'], mirror: 'http://deb.debian.org/debian' });
      assert.deepEqual(s.packages, ['curl', 'python3-flask']);
      assert.equal(s.diskBytes, 4 * 1024 ** 3);
      assert.equal(s.flavor, 'agent');
      const bad = [
        { suite: 'jammy' }, { suite: '../../etc' }, { suite: 'bookworm', packages: ['curl; rm -rf /'] },
        { suite: 'bookworm', packages: ['--allow-unauthenticated'] }, { suite: 'bookworm', diskBytes: 1024 },
        { suite: 'bookworm', mirror: 'file:///etc' }, { suite: 'bookworm', mirror: 'http://x/ -o APT::x' },
      ];
      for (const b of bad) assert.throws(() => normaliseDebianSpec(b), (e) => isCloudletError(e, 'BadInput'), JSON.stringify(b));
    });

    it('sizes: 4G, 512M, 1.5G, bytes; whole MiB; nonsense refused', () => {
      assert.equal(parseSize('4G'), 4 * 1024 ** 3);
      assert.equal(parseSize('4GiB'), 4 * 1024 ** 3);
      assert.equal(parseSize('512M'), 512 * 1024 ** 2);
      assert.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
      assert.equal(parseSize('1000'), 1024 ** 2);
      for (const b of ['', 'G', '-4G', '4X', '4G; rm', '1e400']) assert.throws(() => parseSize(b), (e) => isCloudletError(e, 'BadInput'), b);
    });
  });

  describe('NoCloud seed', () => {
    it('user-data installs and starts the agent, sets the hostname, adds the user with the SSH key', () => {
      const text = userData({ hostname: 'web-1', user: 'dev', sshKey: KEY });
      assert.match(text, /^#cloud-config\n/);
      const d = parse(text);
      assert.equal(d.hostname, 'web-1');
      const agent = d.write_files.find((f: { path: string }) => f.path === '/usr/local/sbin/cloudlet-agent');
      assert.match(Buffer.from(agent.content, 'base64').toString(), /org\.cloudlet\.agent/);
      assert.equal(agent.permissions, '0755');
      assert.ok(d.write_files.some((f: { path: string; content: string }) => f.path === '/etc/systemd/system/cloudlet-agent.service' && /ExecStart=/.test(f.content)));
      assert.deepEqual(d.runcmd, [['systemctl', 'enable', '--now', 'cloudlet-agent.service']]);
      assert.deepEqual(d.users[1], { name: 'dev', shell: '/bin/bash', groups: ['sudo'], sudo: 'ALL=(ALL) NOPASSWD:ALL', lock_passwd: true, ssh_authorized_keys: [KEY] });
      assert.equal(parse(metaData({ hostname: 'web-1' }, 'i-1'))['local-hostname'], 'web-1');
      // No user: the key goes to the image's default user; no agent: nothing written or started.
      const plain = parse(userData({ hostname: 'h', sshKey: KEY, agent: false }));
      assert.deepEqual(plain.ssh_authorized_keys, [KEY]);
      assert.equal(plain.write_files, undefined);
      assert.equal(plain.runcmd, undefined);
    });

    it('refuses hostnames, users and keys that are not what they claim (no YAML or shell smuggling)', () => {
      for (const o of [{ hostname: 'a b' }, { hostname: 'x\nruncmd: [reboot]' }, { hostname: '-x' }, { hostname: 'h', user: 'root' },
        { hostname: 'h', user: 'Dev;id' }, { hostname: 'h', sshKey: 'not a key' }, { hostname: 'h', sshKey: `${KEY}\nssh-rsa AAAA` }]) {
        assert.throws(() => validateNoCloud(o), (e) => isCloudletError(e, 'BadInput'), JSON.stringify(o));
      }
      assert.equal(hostnameFrom('My Base_VM.v2'), 'my-base-vm-v2');
      assert.equal(hostnameFrom('___'), 'cloudlet-guest');
    });

    it('serves meta-data and user-data on loopback, records what the guest fetched, and names itself in the SMBIOS serial', async () => {
      const s = new NoCloudServer({ hostname: 'web-1' });
      await s.start();
      try {
        assert.match(s.smbiosSerial, /^ds=nocloud-net;s=http:\/\/10\.0\.2\.2:\d+\/$/);
        const port = Number(/:(\d+)\/$/.exec(s.smbiosSerial)![1]);
        assert.equal(s.seeded, false);
        const meta = await fetch(`http://127.0.0.1:${port}/meta-data`);
        assert.match(await meta.text(), /local-hostname: web-1/);
        assert.equal((await fetch(`http://127.0.0.1:${port}/etc/passwd`)).status, 404);
        const ud = await fetch(`http://127.0.0.1:${port}/user-data`);
        assert.match(await ud.text(), /^#cloud-config/);
        assert.equal(s.seeded, true);
      } finally { s.close(); }
    });
  });
});
