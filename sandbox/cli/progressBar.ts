/** A cli-progress bar fed by a job's server-sent events (one bar, re-labelled per phase). */
import * as cliProgress from 'cli-progress';
import type { CloudletClient, JobEnd, ProgressEvent } from '../client';
import { CloudletError } from '../common/errors';

export async function followJob(client: CloudletClient, jobId: string, label: string): Promise<JobEnd> {
  const tty = process.stderr.isTTY;
  const bar = new cliProgress.SingleBar({
    format: `${label} {phase} [{bar}] {percentage}% {doneMB}/{totalMB} MB`, stream: process.stderr, hideCursor: true, noTTYOutput: false,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  let lastPhase = '';
  const onProgress = (e: ProgressEvent) => {
    const total = e.total ?? 0;
    const payload = { phase: e.phase.padEnd(14), doneMB: ((e.done ?? 0) / 1e6).toFixed(1), totalMB: total ? (total / 1e6).toFixed(1) : '?' };
    if (!tty) {
      if (e.phase !== lastPhase) process.stderr.write(`${label}: ${e.phase}${e.message ? ` (${e.message})` : ''}\n`);
      lastPhase = e.phase;
      return;
    }
    if (!started) { bar.start(total || 1, e.done ?? 0, payload); started = true; }
    bar.setTotal(total || Math.max(1, e.done ?? 1));
    bar.update(e.done ?? 0, payload);
  };
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig);
  try {
    const end = await client.watchJob(jobId, onProgress, ac.signal);
    if (started) bar.stop();
    if (end.status !== 'DONE') throw new CloudletError(end.status === 'CANCELLED' ? 'Cancelled' : end.fault?.code ?? 'Internal', `${label} ${end.status}: ${end.error ?? 'no detail'}`);
    return end;
  } finally {
    if (started) bar.stop();
    process.off('SIGINT', onSig);
  }
}
