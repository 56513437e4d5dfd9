// Captions for the closed-form merge's regularization features: a built-in
// grammar of generic captions (subjects × attributes × settings × styles),
// deterministic for a seed, and a reader for a user's caption file.
import { readFile } from 'node:fs/promises';

import { invalidArgument } from '../errors.js';
import { checkInt, checkPath, describe } from '../validate.js';
import { SeededRandom } from '../train/random.js';

const STYLES = [
  'a photo of', 'a painting of', 'a close-up photo of', 'a sketch of', 'a watercolor painting of', 'a 3d render of',
  'an old photo of', 'a cartoon of', 'a blurry photo of', 'a drawing of', 'an oil painting of', 'a picture of',
];
const ATTRIBUTES = ['', 'red', 'blue', 'small', 'large', 'old', 'white', 'black', 'green', 'wooden', 'shiny', 'yellow'];
const SUBJECTS = [
  'dog', 'cat', 'car', 'house', 'tree', 'bird', 'chair', 'cup', 'bicycle', 'horse', 'flower', 'boat',
  'man', 'woman', 'child', 'teddy bear', 'table', 'lamp', 'mountain', 'bridge', 'book', 'guitar', 'clock', 'backpack',
];
const SETTINGS = [
  '', 'on a beach', 'in the city', 'in a forest', 'at night', 'in the snow', 'on a table', 'in a garden',
  'in a living room', 'on the street', 'under the sky', 'by a lake', 'in the rain', 'in a kitchen', 'on grass', 'in the desert',
];

/** The number of distinct captions the grammar can make. */
export const GENERIC_CAPTION_COUNT = STYLES.length * ATTRIBUTES.length * SUBJECTS.length * SETTINGS.length;

function caption(index: number): string {
  let i = index;
  const setting = SETTINGS[i % SETTINGS.length];
  i = Math.floor(i / SETTINGS.length);
  const subject = SUBJECTS[i % SUBJECTS.length];
  i = Math.floor(i / SUBJECTS.length);
  const attribute = ATTRIBUTES[i % ATTRIBUTES.length];
  i = Math.floor(i / ATTRIBUTES.length);
  const style = STYLES[i];
  const noun = attribute === '' ? subject : `${attribute} ${subject}`;
  const article = /^[aeiou]/.test(noun) ? 'an' : 'a';
  return [style, article, noun, setting].filter((w) => w !== '').join(' ');
}

/**
 * `count` distinct generic captions ("a photo of a dog on a beach", "a
 * painting of a red car in the city", ...), the same list for the same seed.
 */
export function genericCaptions(count = 1000, seed = 0): string[] {
  const fn = 'genericCaptions';
  checkInt(fn, 'count', count, 1, GENERIC_CAPTION_COUNT);
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidArgument(`${fn}: seed must be a non-negative integer, got ${describe(seed)}`);
  // A partial Fisher-Yates shuffle of the grammar's index space: distinct by construction.
  const rng = new SeededRandom(seed);  // the project's seeded generator (mulberry32)
  const swapped = new Map<number, number>();
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rng.next() * (GENERIC_CAPTION_COUNT - i));
    const pick = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    out.push(caption(pick));
  }
  return out;
}

/** A caption file: one caption per line; blank lines and lines starting with '#' are skipped. */
export async function readCaptionFile(path: string): Promise<string[]> {
  const fn = 'readCaptionFile';
  checkPath(fn, 'path', path);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw invalidArgument(`${fn}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const captions = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (captions.length === 0) throw invalidArgument(`${fn}: ${path} holds no captions (one per line)`);
  return captions;
}
