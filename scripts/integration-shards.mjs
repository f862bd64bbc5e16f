// Splits the integration test files (not debianImages: the opt-in `debian` suite) into N shards of about equal time for scripts/test.sh:
// prints one line per shard, its files separated by spaces. Times: test/integration/durations.json
// (seconds on 2 idle cores; a file not listed counts 30 s); longest first, each to the lightest shard.
//   node scripts/integration-shards.mjs 2
//   node scripts/integration-shards.mjs --update   (after a full `npm test`: the times its shards measured,
//     artifacts/test-results/integration-*.json, written into durations.json)
import { readdirSync, readFileSync, writeFileSync } from 'fs';

const dir = 'test/integration';
const seconds = JSON.parse(readFileSync(`${dir}/durations.json`, 'utf8'));
if (process.argv[2] === '--update') {
  const results = 'artifacts/test-results';
  let measured = 0;
  for (const f of readdirSync(results).filter((x) => /^integration(-\d+)?\.json$/.test(x))) {
    for (const [file, secs] of Object.entries(JSON.parse(readFileSync(`${results}/${f}`, 'utf8')).seconds ?? {})) {
      seconds[file] = secs;
      measured++;
    }
  }
  if (!measured) {
    console.error(`no per-file times in ${results}/integration-*.json: run the integration suite first`);
    process.exit(1);
  }
  seconds._ = `Seconds per integration test file as the last full run measured them (two shards at once on 2 cores; ` +
    `node scripts/integration-shards.mjs --update): the shard split balances with them; a file not listed counts 30 s.`;
  writeFileSync(`${dir}/durations.json`, JSON.stringify(seconds, null, 2) + '\n');
  console.log(`${measured} file times written to ${dir}/durations.json`);
  process.exit(0);
}
const n = Math.max(1, Number(process.argv[2]) || 1);
const files = readdirSync(dir).filter((f) => f.endsWith('.test.ts') && f !== 'debianImages.test.ts').sort();
const shards = Array.from({ length: n }, () => ({ total: 0, files: [] }));
for (const f of files.sort((a, b) => (seconds[b] ?? 30) - (seconds[a] ?? 30))) {
  const lightest = shards.reduce((m, s) => (s.total < m.total ? s : m));
  lightest.total += seconds[f] ?? 30;
  lightest.files.push(`${dir}/${f}`);
}
for (const s of shards) if (s.files.length) console.log(s.files.join(' '));
