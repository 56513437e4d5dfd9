// The Hugging Face `tokenizers` file (tokenizer.json) of a CLIP tokenizer:
// model.vocab, model.merges ("a b" strings, or [a, b] pairs in newer files),
// added_tokens and the padding token. Its normalizer and pre_tokenizer are
// CLIP's, which ClipTokenizer applies itself, so they are not read.
import { invalidArgument } from '../errors.js';
import { describe, isPlainObject } from '../validate.js';
import { parseVocab } from './vocab.js';

export interface TokenizerJson {
  vocab: Map<string, number>;
  merges: Array<[string, string]>;
  /** Entries of added_tokens in id order (those already in the vocabulary included); index: the position in the file. */
  added: Array<{ id: number; content: string; index: number }>;
  /** padding.pad_token, when the file sets padding. */
  padToken?: string;
}

const END_OF_WORD = '</w>';

function mergePair(entry: unknown, where: string): [string, string] {
  let pair: unknown[] | undefined;
  if (typeof entry === 'string') pair = entry.split(' ');
  else if (Array.isArray(entry)) pair = entry;
  if (pair === undefined || pair.length !== 2 || pair.some((p) => typeof p !== 'string' || p === '')) {
    const shown = typeof entry === 'string' ? `'${entry.slice(0, 80)}'` : describe(entry);
    throw invalidArgument(`ClipTokenizer: ${where} must be "left right" or [left, right] with two non-empty symbols, got ${shown}`);
  }
  return pair as [string, string];
}

/** Reads the parsed JSON of `path`; every error names the file and the field. */
export function readTokenizerJson(json: unknown, path: string): TokenizerJson {
  const at = (field: string): string => `'${path}': ${field}`;
  if (!isPlainObject(json)) throw invalidArgument(`ClipTokenizer: '${path}' must hold an object, got ${describe(json)}`);
  const model = json.model;
  if (!isPlainObject(model)) throw invalidArgument(`ClipTokenizer: ${at('model')} must be an object, got ${describe(model)}`);
  // tokenizers writes model.type; files from before it existed are BPE when they have merges.
  if (model.type !== undefined && model.type !== 'BPE') {
    throw invalidArgument(`ClipTokenizer: ${at('model.type')} must be 'BPE' (CLIP's tokenizer), got ${describe(model.type)}`);
  }
  const suffix = model.end_of_word_suffix;
  if (suffix !== undefined && suffix !== null && suffix !== END_OF_WORD) {
    throw invalidArgument(`ClipTokenizer: ${at('model.end_of_word_suffix')} must be '${END_OF_WORD}' (CLIP's end-of-word marker), got ${describe(suffix)}`);
  }
  const vocab = parseVocab(model.vocab, at('model.vocab'));
  if (!Array.isArray(model.merges)) throw invalidArgument(`ClipTokenizer: ${at('model.merges')} must be an array, got ${describe(model.merges)}`);
  if (model.merges.length === 0) throw invalidArgument(`ClipTokenizer: ${at('model.merges')} holds no merges`);
  const merges = model.merges.map((m: unknown, i: number) => mergePair(m, at(`model.merges[${i}]`)));

  const addedList = json.added_tokens ?? [];
  if (!Array.isArray(addedList)) throw invalidArgument(`ClipTokenizer: ${at('added_tokens')} must be an array, got ${describe(addedList)}`);
  const added = addedList.map((entry: unknown, i: number) => {
    if (!isPlainObject(entry)) throw invalidArgument(`ClipTokenizer: ${at(`added_tokens[${i}]`)} must be an object { id, content }, got ${describe(entry)}`);
    const { id, content } = entry;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw invalidArgument(`ClipTokenizer: ${at(`added_tokens[${i}].id`)} must be a non-negative integer, got ${describe(id)}`);
    }
    if (typeof content !== 'string' || content === '') {
      throw invalidArgument(`ClipTokenizer: ${at(`added_tokens[${i}].content`)} must be a non-empty string, got ${describe(content)}`);
    }
    return { id, content, index: i };
  });
  added.sort((a, b) => a.id - b.id);

  let padToken: string | undefined;
  const padding = json.padding;
  if (padding !== undefined && padding !== null) {
    if (!isPlainObject(padding)) throw invalidArgument(`ClipTokenizer: ${at('padding')} must be an object or null, got ${describe(padding)}`);
    if (padding.pad_token !== undefined) {
      if (typeof padding.pad_token !== 'string') throw invalidArgument(`ClipTokenizer: ${at('padding.pad_token')} must be a string, got ${describe(padding.pad_token)}`);
      padToken = padding.pad_token;
    }
  }
  return { vocab, merges, added, padToken };
}
