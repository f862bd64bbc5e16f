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

    it('answers a ping', async () => {
      agent.send('P p1');
      assert.equal(await agent.next(), 'D p1 0');
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

    it('says what is wrong with a bad request', async () => {
      agent.send('Z z1');
      const r = await agent.reply('z1');
      assert.equal(r.status, 255);
      assert.match(r.err, /unknown request/);
    });
  });
}
