// The token → id table of vocab.json (and of tokenizer.json's model.vocab):
// non-negative integer ids, each used once, running 0..n-1 because the text
// encoder's embedding table has one row per id.
import { invalidArgument } from '../errors.js';
import { describe, isPlainObject } from '../validate.js';

/** `where` names the object in errors: "'vocab.json'" or "'tokenizer.json': model.vocab". */
export function parseVocab(json: unknown, where: string): Map<string, number> {
  if (!isPlainObject(json)) throw invalidArgument(`ClipTokenizer: ${where} must hold an object of token → id, got ${describe(json)}`);
  const vocab = new Map<string, number>();
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(json)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw invalidArgument(`ClipTokenizer: ${where}: entry '${token}' must map to a non-negative integer id, got ${describe(id)}`);
    }
    const other = seen.get(id);
    if (other !== undefined) throw invalidArgument(`ClipTokenizer: ${where}: entries '${other}' and '${token}' share id ${id}`);
    seen.set(id, token);
    vocab.set(token, id);
  }
  for (let id = 0; id < vocab.size; id++) {
    if (!seen.has(id)) throw invalidArgument(`ClipTokenizer: ${where}: ids must run 0..${vocab.size - 1} without gaps, ${id} is missing`);
  }
  return vocab;
}

