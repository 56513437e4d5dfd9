// Held-out concepts: specific "objects" (like a user's toy) that the
// pretraining sampler never draws — new shapes, or world shapes with a pattern.
// Each concept keeps its identity (shape, colour, pattern) across instances
// that vary in position, size and background, as personalisation photos do.
import { invalidArgument } from '../errors.js';
import { checkInt, checkOptions, describe } from '../validate.js';
import { SeededRandom } from '../train/random.js';
import {
  BACKGROUNDS, POSITIONS, SIZES, checkResolution, placeObject, renderScene,
  type BackgroundName, type ColourName, type Pattern, type Position, type Scene, type ShapeName, type Size,
} from './scene.js';

export interface ConceptSpec {
  id: string;
  /** The word a prompt puts after the concept token ("a <new1> shape"). */
  classWord: 'shape' | 'circle' | 'square';
  description: string;
  shape: ShapeName;
  colour: ColourName;
  pattern?: Pattern;
}

export const CONCEPTS: readonly ConceptSpec[] = Object.freeze([
  { id: 'star', classWord: 'shape', description: 'an orange five-pointed star', shape: 'star', colour: 'orange' },
  { id: 'ring', classWord: 'shape', description: 'a purple ring (annulus)', shape: 'ring', colour: 'purple' },
  { id: 'cross', classWord: 'shape', description: 'a green plus sign', shape: 'cross', colour: 'green' },
  { id: 'heart', classWord: 'shape', description: 'a red heart', shape: 'heart', colour: 'red' },
  {
    id: 'striped-square', classWord: 'square', description: 'a blue square with white horizontal stripes',
    shape: 'square', colour: 'blue', pattern: { kind: 'stripes', colour: 'white' },
  },
  {
    id: 'checker-circle', classWord: 'circle', description: 'a yellow circle with a black checker pattern',
    shape: 'circle', colour: 'yellow', pattern: { kind: 'checker', colour: 'black' },
  },
].map((c) => Object.freeze(c as ConceptSpec)));

export const CONCEPT_IDS: readonly string[] = CONCEPTS.map((c) => c.id);

/** The spec of concept `id`; `fn` names the caller in the error for an unknown id. */
export function conceptById(id: string, fn = 'conceptById'): ConceptSpec {
  if (typeof id !== 'string') throw invalidArgument(`${fn}: concept id must be a string, got ${describe(id)}`);
  const spec = CONCEPTS.find((c) => c.id === id);
  if (spec === undefined) throw invalidArgument(`${fn}: unknown concept id ${describe(id)} (expected one of: ${CONCEPT_IDS.join(', ')})`);
  return spec;
}

export interface ConceptLayout {
  background?: BackgroundName;
  size?: Size;
  position?: Position;
}

/** The backgrounds an instance of the concept may use: none equal to one of its colours. */
function backgroundsFor(spec: ConceptSpec): BackgroundName[] {
  const own: string[] = [spec.colour, ...(spec.pattern ? [spec.pattern.colour] : [])];
  return BACKGROUNDS.filter((b) => !own.includes(b));
}

/** One instance of the concept; what `layout` leaves out is drawn at random. */
export function conceptScene(spec: ConceptSpec, rng: SeededRandom, layout: ConceptLayout = {}): Scene {
  const background = layout.background ?? rng.pick(backgroundsFor(spec));
  const obj = placeObject(rng, spec.shape, spec.colour, layout.size ?? rng.pick(SIZES), layout.position ?? rng.pick(POSITIONS));
  if (spec.pattern) obj.pattern = { ...spec.pattern };
  obj.concept = spec.id;
  return { background, objects: [obj] };
}

function shuffled<T>(xs: readonly T[], rng: SeededRandom): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export interface ConceptImageOptions {
  /** Instances (default 5). */
  count?: number;
  resolution?: number;
  /** Different seeds give different instances of the same concept (default 0). */
  seed?: number;
}

export interface ConceptImage {
  image: Uint8Array;
  scene: Scene;
}

const MAX_CONCEPT_IMAGES = 1000;

/** `count` instances of concept `id`, varied in position, size and background. */
export function conceptImages(id: string, options?: ConceptImageOptions): ConceptImage[] {
  const fn = 'conceptImages';
  const spec = conceptById(id, fn);
  const o = checkOptions(fn, options, ['count', 'resolution', 'seed']);
  const count = checkInt(fn, 'count', o.count ?? 5, 1, MAX_CONCEPT_IMAGES);
  const resolution = checkResolution(fn, o.resolution ?? 32);
  const seed = o.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw invalidArgument(`${fn}: seed must be a non-negative integer, got ${describe(seed)}`);
  }
  const rng = new SeededRandom(seed).fork(`concept:${id}`);
  // Cycle through shuffled positions, sizes and backgrounds so that even 4-5 instances vary in each.
  const order = rng.fork('layout');
  const positions = shuffled(POSITIONS, order);
  const backgrounds = shuffled(backgroundsFor(spec), order);
  const firstSize = order.int(0, 1);
  return Array.from({ length: count }, (_, i) => {
    const layout = {
      position: positions[i % positions.length],
      background: backgrounds[i % backgrounds.length],
      size: SIZES[(firstSize + i) % 2],
    };
    const scene = conceptScene(spec, rng.fork(i), layout);
    return { image: renderScene(scene, resolution), scene };
  });
}
