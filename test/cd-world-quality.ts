// Prints Custom Diffusion's multi-seed figures on the world model (the README's
// quality table): npm run quality:cd. About 6 minutes a seed on 2 cores.
import { cdWorldFigures, formatFigures } from './cd-world-figures.js';

const figures = await cdWorldFigures((line) => console.error(line));
console.log(formatFigures(figures));
if (process.argv.includes('--json')) console.log(JSON.stringify(figures.bySeed));
