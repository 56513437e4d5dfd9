// Text alignment for the world's metrics: how much of what a caption asks
// for an image shows, overall (textAlignment) and attribute by attribute.
//
// Text alignment: the fraction of the caption's attributes (parseCaption) the
// analysis satisfies, under the best matching of requested to detected objects.
import { invalidArgument } from '../../errors.js';
import { describe } from '../../validate.js';
import { parseCaption, type RequestedObject } from '../scene.js';
import { analyzeImage, checkImage, type DetectedObject } from './analysis.js';

function requestedPoints(req: RequestedObject): number {
  return (req.shape ? 1 : 0) + (req.colour ? 1 : 0) + (req.size ? 1 : 0) + (req.position ? 1 : 0);
}

function satisfiedPoints(req: RequestedObject, obj: DetectedObject): number {
  return (req.shape !== undefined && req.shape === obj.shape ? 1 : 0)
    + (req.colour !== undefined && req.colour === obj.colour ? 1 : 0)
    + (req.size !== undefined && req.size === obj.size ? 1 : 0)
    + (req.position !== undefined && req.position === obj.position ? 1 : 0);
}

/**
 * The one-to-one assignment of requested to detected objects that earns the
 * most attribute points: the points, and for each requested object the index
 * of its detected object (−1: left unmatched).
 */
function bestAssignment(requested: readonly RequestedObject[], detected: readonly DetectedObject[]): { points: number; match: number[] } {
  const used = new Array<boolean>(detected.length).fill(false);
  const current = new Array<number>(requested.length).fill(-1);
  let best = { points: -1, match: current.slice() };
  const search = (i: number, points: number): void => {
    if (i === requested.length) {
      if (points > best.points) best = { points, match: current.slice() };
      return;
    }
    current[i] = -1; // requested object i left unmatched
    search(i + 1, points);
    for (let j = 0; j < detected.length; j++) {
      if (used[j]) continue;
      used[j] = true;
      current[i] = j;
      search(i + 1, points + satisfiedPoints(requested[i], detected[j]));
      used[j] = false;
    }
    current[i] = -1;
  };
  search(0, 0);
  return best;
}

const MAX_REQUESTED = 6;

/**
 * The fraction of what the caption asks for that the image shows: per requested
 * object its shape, colour, size and position (whichever the caption names),
 * plus the background and the number of objects, under the best matching of
 * requested to detected objects. A caption naming nothing measurable scores 1.
 */
export function textAlignment(image: Uint8Array, caption: string, resolution = 32): number {
  checkImage('textAlignment', image, resolution);
  if (typeof caption !== 'string') throw invalidArgument(`textAlignment: caption must be a string, got ${describe(caption)}`);
  const parsed = parseCaption(caption);
  if (parsed.objects.length > MAX_REQUESTED) {
    throw invalidArgument(`textAlignment: caption asks for ${parsed.objects.length} objects, at most ${MAX_REQUESTED} are scored`);
  }
  const analysis = analyzeImage(image, resolution);
  let total = 0;
  let earned = 0;
  if (parsed.background !== undefined) {
    total++;
    if (analysis.backgroundColour === parsed.background) earned++;
  }
  if (parsed.objects.length > 0) {
    total++;
    if (analysis.objects.length === parsed.objects.length) earned++;
    total += parsed.objects.reduce((s, o) => s + requestedPoints(o), 0);
    earned += bestAssignment(parsed.objects, analysis.objects).points;
  }
  return total === 0 ? 1 : earned / total;
}

/** What a caption can ask of an image, attribute by attribute. */
export const WORLD_ATTRIBUTES = ['count', 'background', 'shape', 'colour', 'size', 'position'] as const;
export type WorldAttribute = (typeof WORLD_ATTRIBUTES)[number];

/** How often an attribute was asked for, and how often the image showed it. */
export interface AttributeTally {
  asked: number;
  shown: number;
}

export type AttributeTallies = Record<WorldAttribute, AttributeTally>;

export function emptyTallies(): AttributeTallies {
  return Object.fromEntries(WORLD_ATTRIBUTES.map((a) => [a, { asked: 0, shown: 0 }])) as AttributeTallies;
}

/**
 * textAlignment split by attribute: the object count, the background, and
 * each requested object's shape, colour, size and position under the same
 * best matching of requested to detected objects. Adds into `into` when given.
 */
export function attributeMatches(image: Uint8Array, caption: string, resolution = 32, into: AttributeTallies = emptyTallies()): AttributeTallies {
  checkImage('attributeMatches', image, resolution);
  if (typeof caption !== 'string') throw invalidArgument(`attributeMatches: caption must be a string, got ${describe(caption)}`);
  const parsed = parseCaption(caption);
  if (parsed.objects.length > MAX_REQUESTED) {
    throw invalidArgument(`attributeMatches: caption asks for ${parsed.objects.length} objects, at most ${MAX_REQUESTED} are scored`);
  }
  const analysis = analyzeImage(image, resolution);
  const tally = (a: WorldAttribute, ok: boolean): void => {
    into[a].asked++;
    if (ok) into[a].shown++;
  };
  if (parsed.background !== undefined) tally('background', analysis.backgroundColour === parsed.background);
  if (parsed.objects.length > 0) {
    tally('count', analysis.objects.length === parsed.objects.length);
    const { match } = bestAssignment(parsed.objects, analysis.objects);
    parsed.objects.forEach((req, i) => {
      const obj = match[i] >= 0 ? analysis.objects[match[i]] : undefined;
      if (req.shape !== undefined) tally('shape', obj?.shape === req.shape);
      if (req.colour !== undefined) tally('colour', obj?.colour === req.colour);
      if (req.size !== undefined) tally('size', obj?.size === req.size);
      if (req.position !== undefined) tally('position', obj?.position === req.position);
    });
  }
  return into;
}
