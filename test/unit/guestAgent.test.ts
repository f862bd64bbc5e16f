/**
 * The guest agent script under every shell it must run on (busybox sh in the test guest, dash and
 * bash on Debian guests), talking the line protocol over stdin/stdout (CLOUDLET_AGENT_PORT=-).
 */
import { strict as assert } from 'assert';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { agentScriptPath } from '../../sandbox/guest/build';
import { escapeCommand } from '../../sandbox/qemu/agentClient';

const SHELLS: [string, string[]][] = [
  ['busybox sh', ['busybox', 'sh']],
  ['dash', ['dash']],
  ['bash', ['bash', '--posix']],
];

class Agent {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];
  constructor(readonly p: ChildProcessWithoutNullStreams) {
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line); else this.lines.push(line);
      }
    });
  }
  next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('agent did not answer')), 10_000);
      this.waiters.push((x) => { clearTimeout(t); resolve(x); });
    });
  }
  send(line: string): void { this.p.stdin.write(line + '\n'); }
  /** Reads lines until "D <id> <status>", returning the decoded streams. */
  async reply(id: string): Promise<{ out: string; err: string; status: number }> {
    const out: string[] = []; const err: string[] = [];
    for (;;) {
      const [k, rid, payload] = (await this.next()).split(' ');
      assert.equal(rid, id, 'reply for the request sent');
      if (k === 'O') out.push(payload); else if (k === 'E') err.push(payload);
      else if (k === 'D') return { out: Buffer.from(out.join(''), 'base64').toString(), err: Buffer.from(err.join(''), 'base64').toString(), status: Number(payload) };
    }
  }
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

for (const [label, argv] of SHELLS) {
  const available = spawnSync(argv[0], [...argv.slice(1), '-c', 'true']).status === 0;
  (available ? describe : describe.skip)(`guest agent under ${label}`, () => {
    let agent: Agent;
    let tmp: string;
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-'));
      agent = new Agent(spawn(argv[0], [...argv.slice(1), agentScriptPath()], { env: { ...process.env, CLOUDLET_AGENT_PORT: '-', TMPDIR: tmp } }));
    });
    afterEach(() => { agent.p.kill('SIGKILL'); fs.rmSync(tmp, { recursive: true, force: true }); });

    it('answers a ping with its protocol version (2)', async () => {
      agent.send('P p1');
      assert.equal(await agent.next(), 'D p1 0 2');
    });

    it('R: runs an escaped command (every byte value but NUL, UTF-8, quotes, backslashes): stdout, stderr, exit status', async () => {
      const all = Buffer.from(Array.from({ length: 127 }, (_, i) => i + 1)).toString('latin1') + 'é中';
      const quoted = `'${all.replace(/'/g, `'\\''`)}'`;
      const cmd = `printf '%s' ${quoted} | od -An -tx1 | tr -d ' \\n'; printf '\\n%s\\n' "$# \\\\ \\"$(echo "q'uote")\\""; echo oops >&2; exit 7`;
      agent.send(`R r1 10 ${escapeCommand(cmd)}`);
      assert.deepEqual(await agent.reply('r1'), {
        out: `${Buffer.from(all, 'utf8').toString('hex')}\n0 \\ "q'uote"\n`, err: 'oops\n', status: 7,
      });
    });

    it('R: the command runs with stdin at end of file and cannot write to the agent port; the agent goes on after a syntax error', async () => {
      agent.send(`R r2 10 ${escapeCommand('cat; echo to-port >&4; echo fd4=$? >&2; if then')}`);
      const r = await agent.reply('r2');
      assert.equal(r.status, 2, 'a syntax error: status 2 like sh');
      assert.equal(r.out, '');
      agent.send(`R r3 10 ${escapeCommand('echo still here')}`);
      assert.deepEqual(await agent.reply('r3'), { out: 'still here\n', err: '', status: 0 });
    });

    it('R: a command past its timeout is ended with its children (status 124) and the agent answers the next one at once', async () => {
      const marker = path.join(tmp, 'child-ran');
      const t0 = Date.now();
      agent.send(`R r4 1 ${escapeCommand(`(sleep 3; touch '${marker}') & sleep 30; echo never`)}`);
      const r = await agent.reply('r4');
      assert.equal(r.status, 124);
      assert.equal(r.out, '');
      assert.ok(Date.now() - t0 < 8000, `ended after ${Date.now() - t0} ms`);
      agent.send(`R r5 10 ${escapeCommand('exit 0')}`);
      assert.equal((await agent.reply('r5')).status, 0);
      await new Promise((res) => setTimeout(res, 3500));
      assert.equal(fs.existsSync(marker), false, 'the background child was ended too');
    });

    it('R: a quick command does not wait for its watchdog (a 60 s timeout)', async () => {
      const t0 = Date.now();
      for (let i = 0; i < 3; i++) {
        agent.send(`R q${i} 60 ${escapeCommand(`echo ${i}`)}`);
        assert.deepEqual(await agent.reply(`q${i}`), { out: `${i}\n`, err: '', status: 0 });
      }
      assert.ok(Date.now() - t0 < 5000, `three commands took ${Date.now() - t0} ms`);
    });

    it('X (protocol 1, base64 command) still works', async () => {
      agent.send(`X x0 10 ${b64('echo old; exit 3')}`);
      assert.deepEqual(await agent.reply('x0'), { out: 'old\n', err: '', status: 3 });
    });

    it('runs a command: stdout, stderr and exit status, with any bytes in the command', async () => {
      agent.send(`X x1 10 ${b64("printf 'a b\\n%s\\n' \"$(echo 'q\"uote')\"; echo oops >&2; exit 7")}`);
      assert.deepEqual(await agent.reply('x1'), { out: 'a b\nq"uote\n', err: 'oops\n', status: 7 });
    });

    it('returns long output intact', async () => {
      agent.send(`X x2 10 ${b64('i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done')}`);
      const r = await agent.reply('x2');
      assert.equal(r.status, 0);
      assert.equal(r.out.split('\n').length, 3001);
      assert.equal(r.out.split('\n')[2999], 'line-2999');
    });

    it('copies a file in, in chunks, with its mode', async () => {
      const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) & 0xff));
      const dest = path.join(tmp, 'sub dir', 'f.bin');
      agent.send(`W c1 ${b64(dest)} 750`);
      assert.equal(await agent.next(), 'D c1 0');
      for (let o = 0; o < data.length; o += 3072) agent.send(`C c1 ${data.subarray(o, o + 3072).toString('base64')}`);
      agent.send('F c1');
      assert.equal(await agent.next(), 'D c1 0');
      assert.deepEqual(fs.readFileSync(dest), data);
      assert.equal(fs.statSync(dest).mode & 0o777, 0o750);
    });

    it('K: copies raw bytes (protocol 2), several chunks, every byte value incl. newlines and NUL', async () => {
      const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff));
      const dest = path.join(tmp, 'new dir', 'raw.bin');
      agent.send(`W k1 ${b64(dest)} 640`);
      assert.equal(await agent.next(), 'D k1 0');
      for (let o = 0; o < data.length; o += 30_000) {
        const chunk = data.subarray(o, o + 30_000);
        agent.p.stdin.write(`K k1 ${chunk.length}\n`);
        agent.p.stdin.write(chunk);
      }
      agent.send('F k1');
      assert.equal(await agent.next(), 'D k1 0');
      assert.deepEqual(fs.readFileSync(dest), data);
      assert.equal(fs.statSync(dest).mode & 0o777, 0o640);
      assert.equal(fs.existsSync(`${dest}.part`), false);
      // Bytes for a copy that is not in progress are read and dropped: the next request is still understood.
      agent.p.stdin.write('K other 5\nP x\nY');
      agent.send('P p9');
      assert.equal(await agent.next(), 'D p9 0 2');
    });

    it('refuses a bad copy start (mode, a path it cannot create) and a bad length, and goes on', async () => {
      agent.send(`W w1 ${b64(path.join(tmp, 'f'))} 7;9`);
      assert.match((await agent.reply('w1')).err, /bad mode/);
      fs.writeFileSync(path.join(tmp, 'plain'), '');
      agent.send(`W w2 ${b64(path.join(tmp, 'plain', 'below', 'f'))} 644`);
      const w2 = await agent.reply('w2');
      assert.equal(w2.status, 1);
      assert.notEqual(w2.err, '');
      agent.send('K w3 12x');
      assert.match((await agent.reply('w3')).err, /bad length/);
      agent.send('F w9');
      assert.match((await agent.reply('w9')).err, /no copy in progress/);
      agent.send('P p2');
      assert.equal(await agent.next(), 'D p2 0 2');
    });

    it('says what is wrong with a bad request', async () => {
      agent.send('Z z1');
      const r = await agent.reply('z1');
      assert.equal(r.status, 255);
      assert.match(r.err, /unknown request/);
    });
  });
}
