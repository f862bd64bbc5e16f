/**
 * Issue 12.2: `cloudlet base create --image FILE` with images built from Debian packages during test
 * set-up (fixtures/cloudImage.ts: MBR partition table, grub, compressed qcow2), imported exactly as
 * a downloaded cloud image: firmware boot through the image's own grub, cloud-init fetching the
 * NoCloud seed that installs the agent, sets the host name and adds the user and SSH key. An image
 * with neither cloud-init nor the agent is refused with how to add the agent, leaving nothing;
 * `--no-agent --ready-marker TEXT` still makes a base of it. And a Debian build interrupted half-way
 * leaves no stage that looks done, no base, and resumes from the last complete stage.
 */
import { strict as assert } from 'assert';
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { buildDebianGuest, debianCacheDir, type DebianGuest } from '../../sandbox/guest/debian';
import { removeBuildDir } from '../../sandbox/guest/stages';
import { runCli } from './registry/cli';
import { CLOUD_IMAGE_SUITE, ensureCloudImage } from './fixtures/cloudImage';
import { killQemusUnder, qemuPidsUnder } from './fixtures/testBase';

/** cloud-init's Python under TCG on 2 shared, busy cores can take longer than the default 900 s. */
const SLOW = ['--timeout', '2400'];
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJRBgjd6lRw1SJ7Kw4nqfqu7OqYTMCi9K6EknGlfBYX6 dev@laptop';

describe('base create --image: images built from Debian packages, booted by their own grub (real QEMU)', function () {
  this.timeout(3_600_000);
  let cloud: DebianGuest;
  let bare: DebianGuest;
  let home: string;
  const cli = (args: string[], env: Record<string, string> = {}, stdin?: string) => runCli(args, { CLOUDLET_HOME: home, CLOUDLET_CLI_MAIN: '1', ...env }, stdin);
  const bases = async () => JSON.parse((await cli(['base', 'list', '--json'])).stdout) as { baseId: string; name: string }[];
  const leftovers = () => (fs.existsSync(path.join(home, 'tmp')) ? fs.readdirSync(path.join(home, 'tmp')) : []);

  before(async () => {
    cloud = await ensureCloudImage('cloud-image');
    bare = await ensureCloudImage('bare-image');
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-images-'));
    fs.writeFileSync(path.join(home, 'dev.pub'), `${SSH_KEY}\n`);
  });
  after(() => {
    if (!home) return;
    killQemusUnder(home);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('the test images are what a distribution publishes: compressed qcow2, MBR with grub, a bootable partition', async () => {
    for (const g of [cloud, bare]) {
      const head = Buffer.alloc(4);
      const fd = fs.openSync(g.image!, 'r');
      fs.readSync(fd, head, 0, 4, 0);
      fs.closeSync(fd);
      assert.equal(head.toString('latin1'), 'QFI\xfb', `${g.image} is a qcow2 file`);
      const raw = path.join(home, 'probe.raw');
      execFileSync('qemu-img', ['dd', '-f', 'qcow2', '-O', 'raw', `if=${g.image}`, `of=${raw}`, 'bs=512', 'count=1']);
      const mbr = fs.readFileSync(raw);
      fs.rmSync(raw);
      assert.equal(mbr.readUInt16LE(510), 0xaa55, 'boot signature');
      assert.equal(mbr[446], 0x80, 'first partition marked bootable');
      assert.ok(mbr.subarray(0, 440).includes(Buffer.from('GRUB')), 'grub\'s boot code in the MBR');
      assert.ok(fs.statSync(g.image!).size < g.diskBytes / 2, 'compressed');
    }
  });

  it('a cloud image with cloud-init becomes a base with no manual step: agent from the seed, host name, user and SSH key', async () => {
    const r = await cli(['base', 'create', '--image', cloud.image!, '--name', 'cloud-deb12', '--hostname', 'web-1', '--user', 'dev', '--ssh-key', path.join(home, 'dev.pub'), '--json', ...SLOW]);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    const made = JSON.parse(r.stdout);
    assert.equal(made.origin.kind, 'image');
    assert.equal(made.origin.format, 'qcow2');
    assert.deepEqual((await bases()).map((b) => b.name), ['cloud-deb12']);
    assert.deepEqual(leftovers(), [], 'the converted disk was moved into the bundle, nothing else left');
    const show = JSON.parse((await cli(['base', 'show', 'cloud-deb12', '--json'])).stdout);
    assert.equal(show.vm.kernel, undefined, 'booted by its own boot loader, no -kernel');

    const s = await cli(['sandbox', 'resume', 'cloud-deb12', '--name', 'c1', '--json']);
    assert.equal(s.code, 0, s.stderr);
    const e = await cli(['sandbox', 'exec', 'c1', '--', 'hostname; systemctl is-active cloudlet-agent; id -un dev; cat /home/dev/.ssh/authorized_keys; cloud-init status']);
    assert.equal(e.code, 0, e.stderr);
    const [host, agent, user, key, status] = e.stdout.trim().split('\n');
    assert.equal(host, 'web-1');
    assert.equal(agent, 'active');
    assert.equal(user, 'dev');
    assert.equal(key, SSH_KEY);
    assert.match(status, /status: done/);
    assert.equal((await cli(['sandbox', 'delete', 'c1'])).code, 0);
  });

  it('an image with neither cloud-init nor the agent is refused, saying how to add the agent; nothing is left', async () => {
    const before = (await bases()).length;
    const t0 = Date.now();
    // The wait after a login prompt for an agent already in the image is shortened: none will come.
    const r = await cli(['base', 'create', '--image', bare.image!, '--name', 'bare', ...SLOW], { CLOUDLET_SEED_GRACE_MS: '10000' });
    assert.equal(r.code, 2, r.stderr.slice(-3000));
    assert.match(r.stderr, /neither cloud-init .* nor the cloudlet guest agent/);
    assert.match(r.stderr, /Last console lines:\n[\s\S]*login:/, 'the console tail shows where it stopped');
    assert.match(r.stderr, /hint: .*install the agent in the image \(docs\/guests\.md\).*--no-agent --ready-marker TEXT/);
    assert.equal((await bases()).length, before);
    assert.deepEqual(leftovers(), []);
    assert.deepEqual(qemuPidsUnder(home), [], 'its QEMU was ended');
    process.stderr.write(`bare image refused after ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  });

  it('the same image with --no-agent --ready-marker becomes a base; a sandbox of it is at its login prompt', async () => {
    const r = await cli(['base', 'create', '--image', bare.image!, '--name', 'bare-marker', '--no-agent', '--ready-marker', 'login:', '--json', ...SLOW]);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(JSON.parse(r.stdout).origin.kind, 'image');
    assert.equal((await cli(['sandbox', 'resume', 'bare-marker', '--name', 'b1'])).code, 0);
    const con = await cli(['sandbox', 'console', 'b1'], {}, '\n');
    assert.match(con.stdout, /login:/);
    assert.equal((await cli(['sandbox', 'delete', 'b1'])).code, 0);
  });

  it('raw and vmdk images (qemu-img conversions of the same image, as users get them) also become bases: each boots through its grub to its login prompt', async () => {
    const t0 = Date.now();
    for (const format of ['raw', 'vmdk'] as const) {
      const file = path.join(home, `bare.${format}`);
      execFileSync('qemu-img', ['convert', '-O', format, bare.image!, file]);
      const probe = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', file], { encoding: 'utf8' })) as { format: string; 'virtual-size': number };
      assert.equal(probe.format, format);
      assert.equal(probe['virtual-size'], bare.diskBytes);
      const r = await cli(['base', 'create', '--image', file, '--name', `bare-${format}`, '--no-agent', '--ready-marker', 'login:', '--json', ...SLOW]);
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const made = JSON.parse(r.stdout);
      assert.deepEqual([made.origin.kind, made.origin.format, made.origin.virtualBytes], ['image', format, bare.diskBytes]);
      const show = JSON.parse((await cli(['base', 'show', `bare-${format}`, '--json'])).stdout);
      assert.equal(show.vm.kernel, undefined, 'booted by its own boot loader, no -kernel');
      assert.deepEqual(leftovers(), [], 'the converted disk was moved into the bundle, nothing else left');
      assert.ok(fs.existsSync(file), 'the image itself is left as it was');
      fs.rmSync(file);
    }
    process.stderr.write(`raw + vmdk imports: ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  });
});

describe('base create --debian with --ram and --disk; a Debian build interrupted half-way (root, Debian archive)', function () {
  this.timeout(1_200_000);
  // A disk size no other guest uses: its disk stage is this test's own, every other stage is shared and cached.
  const spec = { suite: CLOUD_IMAGE_SUITE, diskBytes: 1536 * 1024 ** 2 };
  const cacheDir = debianCacheDir();
  let home: string;
  let diskStage = '';
  const diskStages = () => fs.readdirSync(cacheDir).filter((f) => f.startsWith('disk-'));

  before(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-interrupt-'));
    // The stages before the disk (shared with the Debian base): cached, or built now.
    const g = await buildDebianGuest(spec);
    diskStage = g.dir;
    await removeBuildDir(diskStage);
  });
  after(async () => {
    if (diskStage) await removeBuildDir(diskStage);
    killQemusUnder(home);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('--ram 768 --disk 3G: the guest has that memory and that disk (a disk stage of its own, the other stages from the cache)', async () => {
    const sizedHome = path.join(home, 'sized');
    const stagesBefore = new Set(diskStages());
    const r = await runCli(['base', 'create', '--debian', spec.suite, '--ram', '768', '--disk', '3G', '--name', 'sized', '--json'], { CLOUDLET_HOME: sizedHome, CLOUDLET_CLI_MAIN: '1' });
    try {
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const made = JSON.parse(r.stdout);
      assert.equal(made.origin.kind, 'debian');
      const show = JSON.parse((await runCli(['base', 'show', 'sized', '--json'], { CLOUDLET_HOME: sizedHome, CLOUDLET_CLI_MAIN: '1' })).stdout);
      assert.equal(show.vm.ramBytes, 768 * 1024 ** 2);
      const env = { CLOUDLET_HOME: sizedHome, CLOUDLET_CLI_MAIN: '1' };
      assert.equal((await runCli(['sandbox', 'resume', 'sized', '--name', 's1'], env)).code, 0);
      const e = await runCli(['sandbox', 'exec', 's1', '--', "awk '/^MemTotal/{print $2}' /proc/meminfo; cat /sys/block/vda/size; df -B1 --output=size / | tail -n 1"], env);
      assert.equal(e.code, 0, e.stderr);
      const [memKib, sectors, rootBytes] = e.stdout.trim().split('\n').map(Number);
      // MemTotal is the RAM less what the kernel keeps for itself (its code, reserved areas).
      assert.ok(memKib > 600 * 1024 && memKib <= 768 * 1024, `MemTotal ${memKib} KiB for --ram 768`);
      assert.equal(sectors * 512, 3 * 1024 ** 3, 'the guest\'s disk is 3 GiB');
      assert.ok(rootBytes > 2.5 * 1024 ** 3 && rootBytes <= 3 * 1024 ** 3, `the root file system fills it: ${rootBytes} bytes`);
      assert.equal((await runCli(['sandbox', 'delete', 's1'], env)).code, 0);
    } finally {
      killQemusUnder(sizedHome);
      // Its disk stage is this test's own: not kept in the shared cache.
      for (const f of diskStages()) if (!stagesBefore.has(f)) await removeBuildDir(path.join(cacheDir, f));
    }
  });

  it('Ctrl-C in the disk stage: exit 130, no stage that looks done, no base; the next build resumes at the disk stage', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'),
      'base', 'create', '--debian', spec.suite, '--disk', '1536M', '--name', 'interrupted'], {
      env: { ...process.env, CLOUDLET_HOME: home, CLOUDLET_CLI_MAIN: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let interrupted = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!interrupted && /disk: making the/.test(stderr)) {
        interrupted = true;
        // In the middle of mke2fs, not before it started.
        setTimeout(() => child.kill('SIGINT'), 1500);
      }
    });
    const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
    assert.ok(interrupted, `the build reached its disk stage:\n${stderr.slice(-2000)}`);
    assert.equal(code, 130, stderr.slice(-2000));
    assert.match(stderr, /cancelled/);
    assert.doesNotMatch(stderr, /bootstrap: debootstrap|system: configuring/, 'the stages before were taken from the cache');
    assert.ok(!fs.existsSync(diskStage), 'no disk stage that looks complete');
    assert.deepEqual(diskStages().filter((f) => f.includes('.partial-')), [], 'no half-built stage folder');
    assert.deepEqual(fs.existsSync(path.join(home, 'bases')) ? fs.readdirSync(path.join(home, 'bases')) : [], [], 'no base');
    assert.deepEqual(fs.existsSync(path.join(home, 'tmp')) ? fs.readdirSync(path.join(home, 'tmp')) : [], []);

    const log: string[] = [];
    const g = await buildDebianGuest(spec, { onProgress: (e) => { if (e.message) log.push(e.message); } });
    assert.equal(g.dir, diskStage);
    assert.ok(fs.existsSync(g.disk!) && fs.statSync(g.disk!).size === spec.diskBytes);
    assert.ok(log.some((l) => /^disk: making the/.test(l)), log.join('\n'));
    assert.ok(!log.some((l) => /^(bootstrap|packages|system): /.test(l)), `only the disk stage was built again:\n${log.join('\n')}`);
  });
});
