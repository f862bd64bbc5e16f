import { strict as assert } from 'assert';
import { DURATION_W, MAX_LABEL_CHARS, SLICE_HUES, shortLabel, sliceHue, timelineLayout } from '../../../webview/layout';

describe('17.11 chart layout (webview/layout.ts)', () => {
  it('timeline labels end before the bars, however long the phase names; durations get their own column', () => {
    const short = timelineLayout(['fetch', 'resume']);
    assert.ok(short.barsLeft >= 90);
    const long = timelineLayout(['handoff-memory-round-final-pause-and-copy', 'resume-dest']);
    // 12px labels: 7.2px a character covers the widest common glyphs of the UI font.
    assert.ok(long.barsLeft >= MAX_LABEL_CHARS * 7.2, `labels up to ${MAX_LABEL_CHARS} chars fit (${long.barsLeft})`);
    assert.ok(long.barsLeft < long.barsRight - 200, 'the bars keep most of the width');
    assert.equal(long.width - long.barsRight, DURATION_W);
    assert.equal(shortLabel('x'.repeat(MAX_LABEL_CHARS)), 'x'.repeat(MAX_LABEL_CHARS));
    assert.equal(shortLabel('x'.repeat(MAX_LABEL_CHARS + 5)).length, MAX_LABEL_CHARS);
    assert.match(shortLabel('x'.repeat(MAX_LABEL_CHARS + 5)), /…$/);
  });

  it('donut slices: each of the first seven gets its own hue (two parts of one encoding no longer share a colour)', () => {
    const hues = Array.from({ length: SLICE_HUES.length }, (_, i) => sliceHue(i));
    assert.equal(new Set(hues).size, SLICE_HUES.length);
    assert.ok(hues.every((h) => !h.includes('faded')));
    assert.match(sliceHue(SLICE_HUES.length), /faded/);
  });
});
