// Mocha reporter: the spec reporter's output, plus a JSON file of counts per suite run that
// scripts/test.sh adds up into the one "N passed, N failed" line CI reads, and the seconds each test
// file took (hooks included), which `node scripts/integration-shards.mjs --update` turns into the shard split's times.
const Mocha = require('mocha');
const fs = require('fs');
const path = require('path');
const { EVENT_RUN_END, EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING } =
  Mocha.Runner.constants;

class CountReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const counts = { passed: 0, failed: 0, skipped: 0, failures: [], seconds: {} };
    const started = new Map();
    // A file's top-level suites, from their begin to their end (before/after hooks included).
    const topLevel = (suite) => suite.file && suite.parent && suite.parent.root;
    runner.on(EVENT_SUITE_BEGIN, (suite) => { if (topLevel(suite)) started.set(suite, Date.now()); });
    runner.on(EVENT_SUITE_END, (suite) => {
      if (!started.has(suite)) return;
      const name = path.basename(suite.file);
      counts.seconds[name] = Math.round((counts.seconds[name] || 0) + (Date.now() - started.get(suite)) / 1000);
    });
    runner.on(EVENT_TEST_PASS, () => counts.passed++);
    runner.on(EVENT_TEST_PENDING, () => counts.skipped++);
    runner.on(EVENT_TEST_FAIL, (test, err) => { counts.failed++; counts.failures.push(`${test.fullTitle()}: ${err && err.message}`); });
    runner.once(EVENT_RUN_END, () => {
      const file = process.env.CLOUDLET_TEST_COUNTS;
      if (!file) return;
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, JSON.stringify(counts, null, 2));
    });
  }
}
module.exports = CountReporter;
