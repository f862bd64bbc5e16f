/**
 * The source's copies of what the destination holds (digest copy and byte copy) as MigrationTracker
 * uses them: a page's SHA-256 taken when it arrives (differing) is the one the round records and
 * sends later (check with that digest), so the paused round does not hash those pages again; and
 * the answer is the same as a check that hashes.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import { DirtyPageTracker, ShadowPageTracker, type PageCopy } from '../../sandbox/handoff/dirtyPageTracker';
import { ZERO_DIGEST } from '../../sandbox/overlay/chunkEncoder';
import { prng } from './helpers/generatedImages';

const PAGE = 4096;
const sha = (b: Buffer) => createHash('sha256').update(b).digest();

function copies(): Array<[string, PageCopy]> {
  const base = Buffer.alloc(8 * PAGE);
  prng(1, PAGE).copy(base, 2 * PAGE);
  const digests = Buffer.concat(Array.from({ length: 8 }, (_, i) => sha(base.subarray(i * PAGE, (i + 1) * PAGE))));
  const shadow = new ShadowPageTracker(undefined, 8);
  shadow.hold(2, base.subarray(2 * PAGE, 3 * PAGE));
  return [['digest copy', new DirtyPageTracker(digests, 8)], ['byte copy', shadow]];
}

describe('handoff page copies: the digest taken on arrival', () => {
  for (const [name, copy] of copies()) {
    it(`${name}: differing gives the SHA-256 of a changed page, nothing for an unchanged one, and records nothing`, () => {
      const held = prng(1, PAGE);
      assert.equal(copy.differing(2, held), undefined);
      assert.equal(copy.differing(3, Buffer.alloc(PAGE)), undefined, 'a zero page the destination holds as zeros');
      const page = prng(7, PAGE);
      assert.ok(copy.differing(2, page)!.equals(sha(page)));
      assert.ok(copy.differing(3, page)!.equals(sha(page)));
      assert.ok(copy.differing(2, Buffer.alloc(PAGE))!.equals(ZERO_DIGEST));
      assert.ok(copy.differs(2, page), 'differing recorded nothing');
    });

    it(`${name}: check with the digest taken on arrival records the page as check without it does`, () => {
      const page = prng(8, PAGE);
      const d = copy.differing(5, page)!;
      assert.ok(copy.check(5, page, d)!.equals(sha(page)));
      assert.equal(copy.check(5, page, d), undefined, 'recorded: the same page again is not sent');
      assert.equal(copy.differing(5, page), undefined);
      // A page that went back to zeros: its digest is a copy, never the shared constant.
      const z = copy.differing(5, Buffer.alloc(PAGE))!;
      const got = copy.check(5, Buffer.alloc(PAGE), z)!;
      assert.ok(got.equals(ZERO_DIGEST));
      assert.ok(copy instanceof ShadowPageTracker || got !== ZERO_DIGEST, 'the zero digest is handed out as a copy');
      assert.equal(copy.check(5, Buffer.alloc(PAGE)), undefined);
    });
  }
});
