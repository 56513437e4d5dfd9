// CLIP's BPE tokenizer, as Stable Diffusion's text encoders expect it: text
// cleanup, CLIP's split regex, GPT-2 byte-level BPE with a '</w>' end-of-word
// marker, start/end tokens and 77-position padding. Reads a diffusers
// tokenizer folder (vocab.json + merges.txt, or the Hugging Face tokenizers
// file tokenizer.json) or OpenAI's bpe_simple_vocab.txt.gz. Added tokens (textual inversion, Custom Diffusion's <new1>) are
// matched whole before anything else.
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { invalidArgument } from '../errors.js';
import { checkInt, checkOptions, describe, isPlainObject } from '../validate.js';
import { bpeMerge, type MergeRanks } from './bpe.js';
import { charToByte, toByteChars, vocabOrder } from './bytes.js';
import { readTokenizerJson } from './tokenizer-json.js';
import { parseVocab } from './vocab.js';

export const START_TOKEN = '<|startoftext|>';
export const END_TOKEN = '<|endoftext|>';
const END_OF_WORD = '</w>';
/** OpenAI's tokenizer keeps this many merges of the file (49152 - 256 bytes - 2 special tokens). */
const OPENAI_MERGES = 49152 - 256 - 2;

export interface EncodeOptions {
  /** Positions in the result, start and end tokens included (default 77). */
  maxLength?: number;
  /** Id for unused positions: 'eos' (SD 1.x), 'zero' (SD 2.x) or an id; default: the tokenizer's pad token. */
  pad?: 'eos' | 'zero' | number;
}

export interface PaddedIds {
  ids: Int32Array;
  /** Positions holding real tokens (start and end included); the rest is padding. */
  length: number;
  /** True when content tokens were dropped to fit; callers should warn. */
  truncated: boolean;
}

// Python's str.isspace set (what the reference's \s collapses), not JS's \s.
const WHITESPACE = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;
const SPLIT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
/** Cached words before the cache is emptied, so hostile input cannot grow it without bound. */
const CACHE_LIMIT = 20_000;
const MAX_LENGTH_LIMIT = 65_536;

function cleanText(text: string): string {
  return text.normalize('NFC').replace(WHITESPACE, ' ').trim().toLowerCase();
}

function escapeRegExp(s: string): string {
  // Only syntax characters: the 'u' flag rejects needless escapes such as \-.
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

async function readText(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw invalidArgument(`ClipTokenizer: cannot read ${what} '${path}': ${why}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function parseJson(buf: Buffer, path: string): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw invalidArgument(`ClipTokenizer: '${path}' is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * Merge lines ('left right') after the header line: OpenAI's file always has
 * one ('bpe_simple_vocab_16e6.txt#version: 0.2'), merges.txt may ('#version: 0.2').
 * Blank lines are skipped.
 */
function parseMerges(text: string, path: string, limit?: number): Array<[string, string]> {
  const lines = text.split(/\r?\n/);
  const merges: Array<[string, string]> = [];
  const header = limit !== undefined || lines[0].startsWith('#version');
  for (let i = header ? 1 : 0; i < lines.length; i++) {
    if (limit !== undefined && merges.length === limit) break;
    const line = lines[i];
    if (line === '') continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw invalidArgument(`ClipTokenizer: '${path}' line ${i + 1}: expected two symbols separated by one space, got '${line.slice(0, 80)}'`);
    }
    merges.push([parts[0], parts[1]]);
  }
  if (limit !== undefined && merges.length < limit) {
    throw invalidArgument(`ClipTokenizer: '${path}' has ${merges.length} merges, expected at least ${limit}`);
  }
  if (merges.length === 0) throw invalidArgument(`ClipTokenizer: '${path}' holds no merges`);
  return merges;
}

/** A special token from tokenizer_config.json / special_tokens_map.json: a string or { content }. */
function specialToken(json: unknown, key: string, path: string): string | undefined {
  if (!isPlainObject(json)) throw invalidArgument(`ClipTokenizer: '${path}' must hold an object, got ${describe(json)}`);
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (isPlainObject(v) && typeof v.content === 'string') return v.content;
  throw invalidArgument(`ClipTokenizer: '${path}': ${key} must be a string or { content: string }, got ${describe(v)}`);
}

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  /** The id encodePadded pads with by default. */
  readonly padId: number;

  private readonly encoder: Map<string, number>;
  private readonly decoder: string[];
  private readonly ranks: MergeRanks;
  private readonly added: string[] = [];
  private addedPattern: RegExp | undefined;
  private cache = new Map<string, number[]>();

  private constructor(vocab: Map<string, number>, merges: Array<[string, string]>, source: string, padToken = END_TOKEN) {
    this.encoder = vocab;
    this.decoder = new Array<string>(vocab.size);
    for (const [token, id] of vocab) this.decoder[id] = token;
    // Every BPE result is a byte symbol (with or without '</w>') or a merge
    // result, so checking these here means encoding never meets an unknown token.
    for (const c of vocabOrder) {
      for (const t of [c, c + END_OF_WORD]) {
        if (!vocab.has(t)) throw invalidArgument(`ClipTokenizer: ${source}: vocabulary lacks the byte symbol '${t}'`);
      }
    }
    const ranks = new Map<string, number>();
    merges.forEach(([a, b], rank) => {
      if (!vocab.has(a + b)) throw invalidArgument(`ClipTokenizer: ${source}: merge ${rank + 1} '${a} ${b}' makes '${a + b}', which is not in the vocabulary`);
      ranks.set(a + ' ' + b, rank);
    });
    this.ranks = ranks;
    const id = (token: string, role: string) => {
      const v = vocab.get(token);
      if (v === undefined) throw invalidArgument(`ClipTokenizer: ${source}: the ${role} token '${token}' is not in the vocabulary`);
      return v;
    };
    this.bosId = id(START_TOKEN, 'start');
    this.eosId = id(END_TOKEN, 'end');
    this.padId = id(padToken, 'pad');
  }

  /** From OpenAI's bpe_simple_vocab_16e6.txt.gz: bytes, bytes + '</w>', 48 894 merges, 2 special tokens. */
  static async fromBpeGz(path: string): Promise<ClipTokenizer> {
    if (typeof path !== 'string') throw invalidArgument(`ClipTokenizer.fromBpeGz: path must be a string, got ${describe(path)}`);
    const gz = await readText(path, 'BPE merges file');
    let text: string;
    try {
      text = gunzipSync(gz).toString('utf8');
    } catch (e) {
      throw invalidArgument(`ClipTokenizer.fromBpeGz: '${path}' is not a gzip file (${(e as Error).message})`);
    }
    const merges = parseMerges(text, path, OPENAI_MERGES);
    const tokens = [...vocabOrder, ...vocabOrder.map((c) => c + END_OF_WORD), ...merges.map(([a, b]) => a + b), START_TOKEN, END_TOKEN];
    const vocab = new Map<string, number>();
    for (const t of tokens) {
      if (vocab.has(t)) throw invalidArgument(`ClipTokenizer.fromBpeGz: '${path}': token '${t}' is made twice`);
      vocab.set(t, vocab.size);
    }
    return new ClipTokenizer(vocab, merges, `'${path}'`);
  }

  /** From a diffusers/transformers vocab.json and merges.txt. */
  static async fromFiles(vocabPath: string, mergesPath: string, options: { padToken?: string } = {}): Promise<ClipTokenizer> {
    for (const [name, p] of [['vocabPath', vocabPath], ['mergesPath', mergesPath]] as const) {
      if (typeof p !== 'string') throw invalidArgument(`ClipTokenizer.fromFiles: ${name} must be a string, got ${describe(p)}`);
    }
    const opts = checkOptions('ClipTokenizer.fromFiles', options, ['padToken']);
    if (opts.padToken !== undefined && typeof opts.padToken !== 'string') {
      throw invalidArgument(`ClipTokenizer.fromFiles: padToken must be a string, got ${describe(opts.padToken)}`);
    }
    const vocab = parseVocab(parseJson(await readText(vocabPath, 'vocab.json'), vocabPath), `'${vocabPath}'`);
    const merges = parseMerges((await readText(mergesPath, 'merges.txt')).toString('utf8'), mergesPath);
    return new ClipTokenizer(vocab, merges, `'${vocabPath}' with '${mergesPath}'`, opts.padToken as string | undefined);
  }

  /**
   * From a Hugging Face tokenizers file (tokenizer.json): model.vocab,
   * model.merges and added_tokens. The pad token is `padToken`, else the
   * file's padding.pad_token, else '<|endoftext|>'.
   */
  static async fromTokenizerJson(path: string, options: { padToken?: string } = {}): Promise<ClipTokenizer> {
    const fn = 'ClipTokenizer.fromTokenizerJson';
    if (typeof path !== 'string') throw invalidArgument(`${fn}: path must be a string, got ${describe(path)}`);
    const opts = checkOptions(fn, options, ['padToken']);
    if (opts.padToken !== undefined && typeof opts.padToken !== 'string') throw invalidArgument(`${fn}: padToken must be a string, got ${describe(opts.padToken)}`);
    const file = readTokenizerJson(parseJson(await readText(path, 'tokenizer.json'), path), path);
    const tok = new ClipTokenizer(file.vocab, file.merges, `'${path}'`, (opts.padToken as string | undefined) ?? file.padToken);
    tok.addWithIds(file.added.map((a) => [a.content, a.id] as const), `'${path}': added_tokens`, (i) => `'${path}': added_tokens[${file.added[i].index}]`);
    return tok;
  }

  /**
   * From a diffusers model folder (its tokenizer/ subfolder) or a tokenizer
   * folder itself: vocab.json + merges.txt, or tokenizer.json when those are
   * absent. The pad token comes from special_tokens_map.json, else
   * tokenizer_config.json, else tokenizer.json's padding, else
   * '<|endoftext|>' (SD 1.x; SD 2.x uses '!'). Tokens in added_tokens.json
   * (saved by textual inversion) are added.
   */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    if (typeof dir !== 'string') throw invalidArgument(`ClipTokenizer.fromFolder: dir must be a string, got ${describe(dir)}`);
    const sub = join(dir, 'tokenizer');
    const folder = (await exists(join(sub, 'vocab.json'))) || (await exists(join(sub, 'tokenizer.json'))) ? sub : dir;
    let padToken: string | undefined;
    // special_tokens_map.json overrides tokenizer_config.json, as in transformers.
    for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
      const p = join(folder, name);
      if (padToken === undefined && (await exists(p))) padToken = specialToken(parseJson(await readText(p, name), p), 'pad_token', p);
    }
    const pad = padToken === undefined ? {} : { padToken };
    const split = (await exists(join(folder, 'vocab.json'))) && (await exists(join(folder, 'merges.txt')));
    const tokenizerJson = join(folder, 'tokenizer.json');
    const tok = !split && (await exists(tokenizerJson))
      ? await ClipTokenizer.fromTokenizerJson(tokenizerJson, pad)
      : await ClipTokenizer.fromFiles(join(folder, 'vocab.json'), join(folder, 'merges.txt'), pad);
    const addedPath = join(folder, 'added_tokens.json');
    if (await exists(addedPath)) tok.addSaved(parseJson(await readText(addedPath, 'added_tokens.json'), addedPath), addedPath);
    return tok;
  }

  /** added_tokens.json: { token: id }, ids continuing the vocabulary without gaps. */
  private addSaved(json: unknown, path: string): void {
    if (!isPlainObject(json)) throw invalidArgument(`ClipTokenizer: '${path}' must hold an object of token → id, got ${describe(json)}`);
    const entries = Object.entries(json).sort((a, b) => Number(a[1]) - Number(b[1]));
    this.addWithIds(entries, `'${path}'`, (i) => `'${path}' entry ${i + 1}`);
  }

  /** Adds [token, id] entries in id order; `file` and `entry(i)` name them in errors. */
  private addWithIds(entries: ReadonlyArray<readonly [string, unknown]>, file: string, entry: (i: number) => string): void {
    entries.forEach(([token, id], i) => {
      if (this.encoder.get(token) === id) return; // transformers may list tokens the vocabulary already has
      if (id !== this.vocabSize) {
        throw invalidArgument(`ClipTokenizer: ${file}: '${token}' has id ${describe(id)}, expected ${this.vocabSize} (ids must continue the vocabulary in order)`);
      }
      try {
        this.addTokens([token]);
      } catch (e) {
        throw invalidArgument(`ClipTokenizer: ${entry(i)}: ${(e as Error).message}`);
      }
    });
  }

  /** Entries in the vocabulary, added tokens included (rows of the text encoder's embedding table). */
  get vocabSize(): number {
    return this.decoder.length;
  }

  /** The added tokens, in id order. */
  get addedTokens(): readonly string[] {
    return this.added;
  }

  tokenToId(token: string): number | undefined {
    return this.encoder.get(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.decoder[id] : undefined;
  }

  /**
   * Adds tokens that are matched whole and case-sensitively in raw text,
   * before cleanup. Returns their ids: vocabSize, vocabSize + 1, ...
   */
  addTokens(tokens: readonly string[]): number[] {
    if (!Array.isArray(tokens)) throw invalidArgument(`ClipTokenizer.addTokens: tokens must be an array of strings, got ${describe(tokens)}`);
    const fresh = new Set<string>();
    tokens.forEach((t, i) => {
      if (typeof t !== 'string' || t.trim() === '') throw invalidArgument(`ClipTokenizer.addTokens: tokens[${i}] must be a non-blank string, got ${describe(t)}`);
      if (this.encoder.has(t) || fresh.has(t)) throw invalidArgument(`ClipTokenizer.addTokens: token '${t}' is already in the vocabulary`);
      fresh.add(t);
    });
    const ids = tokens.map((t) => {
      const id = this.decoder.length;
      this.encoder.set(t, id);
      this.decoder.push(t);
      this.added.push(t);
      return id;
    });
    // Longest first, so that '<new10>' wins over '<new1>'.
    const alternatives = [...this.added].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.addedPattern = new RegExp(alternatives.join('|'), 'gu');
    return ids;
  }

  /**
   * Removes tokens addTokens added: they must be the last ones added, in
   * order, so the ids of every other token stay as they are.
   */
  removeTokens(tokens: readonly string[]): void {
    const fn = 'ClipTokenizer.removeTokens';
    if (!Array.isArray(tokens) || tokens.length === 0) throw invalidArgument(`${fn}: tokens must be a non-empty array of strings, got ${describe(tokens)}`);
    const n = tokens.length;
    const lastAdded = this.added.slice(-n);
    const lastIds = this.decoder.slice(-n);
    if (n > this.added.length || tokens.some((t, i) => lastAdded[i] !== t || lastIds[i] !== t)) {
      throw invalidArgument(`${fn}: tokens must be the last added tokens, in id order (the last ${n} ids hold ${JSON.stringify(lastIds)}), got ${describe(tokens)}`);
    }
    for (const t of tokens) this.encoder.delete(t);
    this.decoder.length -= tokens.length;
    this.added.length -= tokens.length;
    const alternatives = [...this.added].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.addedPattern = alternatives.length === 0 ? undefined : new RegExp(alternatives.join('|'), 'gu');
  }

  /** [start] + BPE(text) + [end], no padding or truncation. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw invalidArgument(`ClipTokenizer.encode: text must be a string, got ${describe(text)}`);
    return [this.bosId, ...this.encodeContent(text), this.eosId];
  }

  /** Ids for the text encoder: start, at most maxLength - 2 content tokens, end, then padding. */
  encodePadded(text: string, options?: EncodeOptions): PaddedIds {
    if (typeof text !== 'string') throw invalidArgument(`ClipTokenizer.encodePadded: text must be a string, got ${describe(text)}`);
    const opts = checkOptions('ClipTokenizer.encodePadded', options, ['maxLength', 'pad']);
    // The upper bound keeps a typo from allocating gigabytes; CLIP uses 77.
    const maxLength = checkInt('ClipTokenizer.encodePadded', 'maxLength', opts.maxLength ?? 77, 2, MAX_LENGTH_LIMIT);
    const pad = opts.pad;
    let padId: number;
    if (pad === undefined) padId = this.padId;
    else if (pad === 'eos') padId = this.eosId;
    else if (pad === 'zero') padId = 0;
    else if (typeof pad === 'number' && Number.isSafeInteger(pad) && pad >= 0 && pad < this.vocabSize) padId = pad;
    else throw invalidArgument(`ClipTokenizer.encodePadded: pad must be 'eos', 'zero' or an id in [0, ${this.vocabSize}), got ${describe(pad)}`);
    const content = this.encodeContent(text);
    const kept = Math.min(content.length, maxLength - 2);
    const ids = new Int32Array(maxLength).fill(padId);
    ids[0] = this.bosId;
    for (let i = 0; i < kept; i++) ids[i + 1] = content[i];
    ids[kept + 1] = this.eosId;
    return { ids, length: kept + 2, truncated: kept < content.length };
  }

  /** Text of ids: start/end tokens skipped, '</w>' read as a space, bytes back to UTF-8. */
  decode(ids: ArrayLike<number>): string {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw invalidArgument(`ClipTokenizer.decode: ids must be an array or typed array, got ${describe(ids)}`);
    const bytes: number[] = [];
    let out = '';
    const flush = () => {
      out += Buffer.from(bytes).toString('utf8').replaceAll(END_OF_WORD, ' ');
      bytes.length = 0;
    };
    const firstAdded = this.decoder.length - this.added.length;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const token = this.idToToken(id);
      if (token === undefined) throw invalidArgument(`ClipTokenizer.decode: ids[${i}] = ${describe(id)} is not an id in [0, ${this.vocabSize})`);
      if (id === this.bosId || id === this.eosId) continue;
      if (id >= firstAdded) {
        // Added tokens are raw text, not byte symbols.
        flush();
        out += token + ' ';
        continue;
      }
      for (const c of token) bytes.push(charToByte.get(c) ?? 0x3f);
    }
    flush();
    return out.replace(/ +/g, ' ').trim();
  }

  private encodeContent(text: string): number[] {
    const out: number[] = [];
    const pattern = this.addedPattern;
    if (pattern === undefined) {
      this.encodePlain(text, out);
      return out;
    }
    let at = 0;
    for (const m of text.matchAll(pattern)) {
      this.encodePlain(text.slice(at, m.index), out);
      out.push(this.encoder.get(m[0])!);
      at = m.index! + m[0].length;
    }
    this.encodePlain(text.slice(at), out);
    return out;
  }

  private encodePlain(text: string, out: number[]): void {
    for (const m of cleanText(text).matchAll(SPLIT)) {
      const piece = m[0];
      if (piece === START_TOKEN || piece === END_TOKEN) {
        out.push(piece === START_TOKEN ? this.bosId : this.eosId);
        continue;
      }
      const word = toByteChars(piece);
      let ids = this.cache.get(word);
      if (ids === undefined) {
        const symbols = [...word];
        symbols[symbols.length - 1] += END_OF_WORD;
        ids = bpeMerge(symbols, this.ranks).map((t) => this.encoder.get(t)!);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      // Not push(...ids): a long word would overflow the argument limit.
      for (const id of ids) out.push(id);
    }
  }

  /**
   * Writes the tokenizer as a diffusers tokenizer/ folder: vocab.json,
   * merges.txt, special_tokens_map.json, tokenizer_config.json and, when
   * tokens were added, added_tokens.json. Each file is written to a temporary
   * name and renamed, so a failed save leaves no half-written file.
   */
  async save(dir: string): Promise<void> {
    if (typeof dir !== 'string' || dir === '') throw invalidArgument(`ClipTokenizer.save: dir must be a folder path, got ${describe(dir)}`);
    await mkdir(dir, { recursive: true });
    const base = Object.fromEntries([...this.encoder].filter(([t]) => !this.added.includes(t)));
    const merges = [...this.ranks].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);
    const pad = this.decoder[this.padId];
    const files: Array<[string, string]> = [
      ['vocab.json', JSON.stringify(base)],
      ['merges.txt', `#version: 0.2\n${merges.join('\n')}\n`],
      ['special_tokens_map.json', JSON.stringify({ bos_token: START_TOKEN, eos_token: END_TOKEN, unk_token: END_TOKEN, pad_token: pad }, null, 2)],
      ['tokenizer_config.json', JSON.stringify({ tokenizer_class: 'CLIPTokenizer', model_max_length: 77, do_lower_case: true, bos_token: START_TOKEN, eos_token: END_TOKEN, unk_token: END_TOKEN, pad_token: pad }, null, 2)],
    ];
    if (this.added.length > 0) files.push(['added_tokens.json', JSON.stringify(Object.fromEntries(this.added.map((t) => [t, this.encoder.get(t)])), null, 2)]);
    for (const [name, text] of files) {
      const path = join(dir, name);
      const tmp = `${path}.tmp-${process.pid}`;
      await writeFile(tmp, text);
      await rename(tmp, path);
    }
  }
}
