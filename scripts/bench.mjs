// `npm run bench -- NAME [args]` runs bench/NAME.ts under the system Node (tsx for TypeScript).
// Every benchmark prints progress as it goes and, as its last line, one JSON object with every
// figure, ratios against the peer measured in the same run under `ratio_*` keys.
import { spawnSync } from 'child_process';
import { existsSync, readdirSync } from 'fs';

const [name, ...rest] = process.argv.slice(2);
const available = existsSync('bench') ? readdirSync('bench').filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)) : [];
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- NAME   (NAME: ${available.join(', ') || 'none yet'})`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${name}.ts`, ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
