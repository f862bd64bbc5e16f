/**
 * Issue 12, bad input to `cloudlet base create` (the CLI as a user runs it, real qemu-img and QEMU):
 * an image in an unknown format, a corrupt or truncated qcow2, a file that is no disk, an image
 * that leans on other files of the host, a guest that never becomes ready (the timeout names the
 * last console lines), Ctrl-C while the guest boots. Each: a clear error, and nothing in the store.
 */
import { strict as assert } from 'assert';
import { execFileSync, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { runCli } from './registry/cli';
import { ensureTestBase, qemuPidsUnder, killQemusUnder, type TestBase } from './fixtures/testBase';

describe('base create: bad images and guests that never get ready (CLI, real qemu-img and QEMU)', function () {
  this.timeout(600_000);
  let home: string;
  let files: string;
  let tb: TestBase;
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { CLOUDLET_HOME: home, CLOUDLET_CLI_MAIN: '1', ...env });
  const img = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'pipe' });
  const nothingLeft = () => {
    assert.deepEqual(fs.existsSync(path.join(home, 'bases')) ? fs.readdirSync(path.join(home, 'bases')) : [], [], 'no base');
    assert.deepEqual(fs.existsSync(path.join(home, 'tmp')) ? fs.readdirSync(path.join(home, 'tmp')) : [], [], 'nothing in tmp/');
    assert.deepEqual(qemuPidsUnder(home), [], 'no QEMU left');
  };
  /** A qcow2 holding 4 MiB of data (so it has L1/L2 tables and clusters to damage). */
  const qcow2 = (name: string) => {
    const raw = path.join(files, `${name}.raw`);
    fs.writeFileSync(raw, crypto.randomBytes(4 * 1024 * 1024));
    const out = path.join(files, `${name}.qcow2`);
    img('convert', '-f', 'raw', '-O', 'qcow2', raw, out);
    fs.rmSync(raw);
    return out;
  };

  before(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-badimg-'));
    files = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-badimg-files-'));
    tb = await ensureTestBase();
  });
  after(() => {
    killQemusUnder(home);
    for (const d of [home, files]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('an image in a format other than qcow2, raw or vmdk: refused naming its format and how to convert it', async () => {
    const vdi = path.join(files, 'disk.vdi');
    img('create', '-f', 'vdi', vdi, '64M');
    const r = await cli(['base', 'create', '--image', vdi, '--name', 'vdi']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /disk\.vdi is a vdi image: give a qcow2, raw or vmdk disk image/);
    assert.match(r.stderr, /hint: convert it first, e\.g\. qemu-img convert -O qcow2/);
    nothingLeft();
  });

  it('a qcow2 with a damaged table, and one cut short (an interrupted download): refused as damaged', async () => {
    const damaged = qcow2('damaged');
    const fd = fs.openSync(damaged, 'r+');
    const header = Buffer.alloc(48);
    fs.readSync(fd, header, 0, 48, 0);
    fs.writeSync(fd, Buffer.alloc(16, 0x7f), 0, 16, Number(header.readBigUInt64BE(40))); // the L1 table's first entries
    fs.closeSync(fd);
    const cut = qcow2('cut');
    fs.truncateSync(cut, 300_000);
    for (const [f, name] of [[damaged, 'damaged.qcow2'], [cut, 'cut.qcow2']]) {
      const r = await cli(['base', 'create', '--image', f, '--name', 'broken']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`${name.replace('.', '\\.')} is a damaged qcow2 image: \\d+ errors? (were|was) found on the image; ERROR`));
      nothingLeft();
    }
  });

  it('a file that is no disk image, and images that read other files of the host: refused before anything boots', async () => {
    const text = path.join(files, 'notes.img');
    fs.writeFileSync(text, 'this is not a disk\n'.repeat(100));
    let r = await cli(['base', 'create', '--image', text, '--name', 'text']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /notes\.img is neither a qcow2 or vmdk image nor a raw disk with a partition table/);

    const layer = path.join(files, 'layer.qcow2');
    img('create', '-f', 'qcow2', '-b', qcow2('backing'), '-F', 'qcow2', layer);
    r = await cli(['base', 'create', '--image', layer, '--name', 'layer']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /layer\.qcow2 is a layer over another image .*backing\.qcow2.*give a self-contained image/);

    const vmdk = path.join(files, 'split.vmdk');
    img('create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', vmdk, '64M');
    r = await cli(['base', 'create', '--image', vmdk, '--name', 'split']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /split\.vmdk is a vmdk descriptor that reads other files \(.*split-s001\.vmdk/);

    r = await cli(['base', 'create', '--image', path.join(files, 'missing.qcow2'), '--name', 'missing']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /missing\.qcow2 does not exist/);
    nothingLeft();
  });

  it('a guest that never becomes ready: the timeout names the last console lines; nothing is left', async () => {
    const g = tb.guest;
    const r = await cli(['base', 'create', '--disk', g.disk, '--kernel', g.kernel, '--initrd', g.initrd, '--append', g.append,
      '--name', 'never', '--no-agent', '--ready-marker', 'a line this guest never prints', '--timeout', '45', '--ram', '128']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the guest did not print "a line this guest never prints" within 45 s\. Last console lines:\n/);
    assert.match(r.stderr, /cloudlet-guest: ready/, 'the console tail holds what the guest printed');
    assert.match(r.stderr, /hint: a guest that never becomes ready/);
    nothingLeft();
  });

  it('Ctrl-C while the guest boots: exit 130, its QEMU ended, nothing in the store', async () => {
    const g = tb.guest;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'),
      'base', 'create', '--disk', g.disk, '--kernel', g.kernel, '--initrd', g.initrd, '--append', g.append,
      '--name', 'interrupted', '--no-agent', '--ready-marker', 'never printed', '--timeout', '300', '--ram', '128'], {
      env: { ...process.env, CLOUDLET_HOME: home, CLOUDLET_CLI_MAIN: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    let poll: NodeJS.Timeout | undefined;
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && /boot: booting/.test(stderr)) {
        sent = true;
        // Once QEMU runs (its pid file is in the half-made bundle).
        poll = setInterval(() => { if (qemuPidsUnder(home).length) { clearInterval(poll); child.kill('SIGINT'); } }, 200);
      }
    });
    const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
    clearInterval(poll);
    assert.ok(sent, stderr);
    assert.equal(code, 130, stderr);
    assert.match(stderr, /cloudlet: cancelled/);
    nothingLeft();
  });
});
