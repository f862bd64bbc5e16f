// Splits the integration test files (not debianImages: the opt-in `debian` suite) into N shards of about equal time for scripts/test.sh:
// prints one line per shard, its files separated by spaces. Times: test/integration/durations.json
// (seconds on 2 idle cores; a file not listed counts 30 s); longest first, each to the lightest shard.
//   node scripts/integration-shards.mjs 2
import { readdirSync, readFileSync } from 'fs';

const n = Math.max(1, Number(process.argv[2]) || 1);
const dir = 'test/integration';
const seconds = JSON.parse(readFileSync(`${dir}/durations.json`, 'utf8'));
const files = readdirSync(dir).filter((f) => f.endsWith('.test.ts') && f !== 'debianImages.test.ts').sort();
const shards = Array.from({ length: n }, () => ({ total: 0, files: [] }));
for (const f of files.sort((a, b) => (seconds[b] ?? 30) - (seconds[a] ?? 30))) {
  const lightest = shards.reduce((m, s) => (s.total < m.total ? s : m));
  lightest.total += seconds[f] ?? 30;
  lightest.files.push(`${dir}/${f}`);
}
for (const s of shards) if (s.files.length) console.log(s.files.join(' '));
