/** At most `n` bytes of a response body (a server may send more than a Range asked for); the rest is cancelled unread. */
export async function readAtMost(res: Response, n: number): Promise<Buffer> {
  const reader = res.body!.getReader();
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
    got += r.value.length;
  }
  await reader.cancel().catch(() => {});
  return Buffer.concat(parts).subarray(0, n);
}
