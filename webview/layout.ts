/**
 * Geometry and colours of the panels' charts, without the DOM (unit-tested): where a timeline's
 * labels, bars and durations go so that no text runs into a bar, and which hue each donut slice gets.
 */

/** Width of one character of the 12px label font, rounded up (labels are measured by length, not rendered). */
const CHAR_W = 7.2;
/** Longest phase name shown whole; longer ones end in "…" (the full name is in the bar's tooltip). */
export const MAX_LABEL_CHARS = 32;
/** Room right of the bars for the longest duration text ("59 min 59 s" at 11px). */
export const DURATION_W = 72;

export interface TimelineLayout {
  width: number;
  /** Left edge of the bars: every label ends before it. */
  barsLeft: number;
  /** Right edge of the bars: every duration starts after its bar and ends before `width`. */
  barsRight: number;
}

export function shortLabel(name: string): string {
  return name.length > MAX_LABEL_CHARS ? `${name.slice(0, MAX_LABEL_CHARS - 1)}…` : name;
}

export function timelineLayout(names: string[], width = 640): TimelineLayout {
  const longest = Math.max(0, ...names.map((n) => shortLabel(n).length));
  const barsLeft = Math.ceil(Math.max(90, longest * CHAR_W + 12));
  return { width, barsLeft, barsRight: width - DURATION_W };
}

/**
 * Donut slices are told apart by position, not by what they encode: two parts of the same encoding
 * (the RAM's and the disk's) used to share one colour, and neighbouring chart colours looked alike.
 * Seven distinct theme chart colours; an eighth slice and on repeat them dashed in the donut and
 * outlined in the legend (class `faded`), never a paler twin of a colour already shown.
 */
// Not charts-yellow: in the light theme it is a dark yellow next to charts-orange (#bf8803 vs #d18616).
export const SLICE_HUES = ['blue', 'orange', 'green', 'purple', 'cyan', 'red', 'grey'] as const;

export function sliceHue(i: number): string {
  return `hue-${SLICE_HUES[i % SLICE_HUES.length]}${i >= SLICE_HUES.length ? ' faded' : ''}`;
}
