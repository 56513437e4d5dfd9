// Where the embedded world model lives in the package: lib/world/model/ (a
// diffusers folder). From the TypeScript sources that is beside this file;
// from the compiled dist/world/ it is ../../lib/world/model.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function worldModelDir(): string {
  const here = fileURLToPath(new URL('./model', import.meta.url));
  return existsSync(here) ? here : fileURLToPath(new URL('../../lib/world/model', import.meta.url));
}

/** The shipped world tuning encoder (lib/world/encoder/encoder.safetensors; `npm run pretrain:encoder` rebuilds it). */
export function worldEncoderPath(): string {
  const here = fileURLToPath(new URL('./encoder/encoder.safetensors', import.meta.url));
  return existsSync(here) ? here : fileURLToPath(new URL('../../lib/world/encoder/encoder.safetensors', import.meta.url));
}
