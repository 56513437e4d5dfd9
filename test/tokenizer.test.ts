// CLIP tokenizer: every reference case from OpenAI's tokenizer, the diffusers
// folder layout, padding and truncation, added tokens, decoding, the BPE merge
// against a plain reference loop, and bad or hostile input.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { bpeMerge } from '../lib/tokenizer/bpe.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { assertRejects, seeded } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const gzPath = join(REFERENCE, 'clip/bpe_simple_vocab_16e6.txt.gz');
const reference = JSON.parse(readFileSync(join(REFERENCE, 'clip/tokenizer-cases.json'), 'utf8')) as {
  bos: number;
  eos: number;
  cases: Array<{ text: string; ids: number[] }>;
};
const BOS = 49406;
const EOS = 49407;
const work = mkdtempSync(join(tmpdir(), 'imprint-tok-'));

const t = suite('tokenizer');
let tok: ClipTokenizer;

/** A diffusers tokenizer folder written from the gz tokenizer, with optional config files. */
function writeFolder(dir: string, config: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  for (let id = 0; id < 49408; id++) vocab[tok.idToToken(id)!] = id;
  writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
  const lines = gunzipSync(readFileSync(gzPath)).toString('utf8').split('\n').slice(1, 48895);
  writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...lines, ''].join('\n'));
  for (const [name, json] of Object.entries(config)) writeFileSync(join(dir, name), JSON.stringify(json));
  return dir;
}

const file = (name: string, data: string | Buffer) => {
  const p = join(work, name);
  writeFileSync(p, data);
  return p;
};

t.before(async () => {
  tok = await ClipTokenizer.fromBpeGz(gzPath);
});

t.after(() => rmSync(work, { recursive: true, force: true }));

t('the vocabulary built from the gz file: 49408 entries in OpenAI order', () => {
  assert.is(tok.vocabSize, 49408);
  assert.is(reference.bos, BOS);
  assert.is(reference.eos, EOS);
  assert.is(tok.bosId, BOS);
  assert.is(tok.eosId, EOS);
  assert.is(tok.padId, EOS);
  assert.is(tok.idToToken(0), '!');
  assert.is(tok.idToToken(255), 'Ń'); // the last moved byte (0xad soft hyphen → U+0143)
  assert.is(tok.idToToken(256), '!</w>');
  assert.is(tok.idToToken(320), 'a</w>');
  assert.is(tok.idToToken(512), 'in'); // first merge 'i n'
  assert.is(tok.tokenToId('<|startoftext|>'), BOS);
  assert.is(tok.idToToken(49408), undefined);
});

t('every reference case encodes to exactly its ids', () => {
  assert.ok(reference.cases.length >= 30);
  for (const c of reference.cases) assert.equal(tok.encode(c.text), c.ids, JSON.stringify(c.text));
});

t('cleanup: empty and blank text, special tokens in text, NFC, unicode whitespace', () => {
  assert.equal(tok.encode(''), [BOS, EOS]);
  assert.equal(tok.encode(' \t\n\u3000 '), [BOS, EOS]);
  assert.equal(tok.encode('a dog<|endoftext|>'), [BOS, 320, 1929, EOS, EOS]);
  assert.equal(tok.encode('<|ENDOFTEXT|>'), [BOS, EOS, EOS]);
  const cafe = reference.cases.find((c) => c.text === 'café au lait')!;
  assert.equal(tok.encode('cafe\u0301 au lait'), cafe.ids); // decomposed é composes first
  assert.equal(tok.encode('a\u00a0photo\u2003of\u2028a   dog'), reference.cases[0].ids);
});

t('fromFolder / fromFiles on diffusers files give the same ids; the pad token comes from the config', async () => {
  const sd1 = writeFolder(join(work, 'sd1/tokenizer'), {
    'special_tokens_map.json': { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  });
  const a = await ClipTokenizer.fromFolder(join(work, 'sd1'));
  assert.is(a.vocabSize, 49408);
  assert.is(a.padId, EOS);
  for (const c of reference.cases) assert.equal(a.encode(c.text), c.ids, JSON.stringify(c.text));
  const b = await ClipTokenizer.fromFiles(join(sd1, 'vocab.json'), join(sd1, 'merges.txt'));
  assert.equal(b.encode(reference.cases[3].text), reference.cases[3].ids);

  // SD 2.x: pad "!" (id 0), given as an object in tokenizer_config.json; the folder itself works too.
  const sd2 = writeFolder(join(work, 'sd2'), { 'tokenizer_config.json': { pad_token: { content: '!', lstrip: false }, model_max_length: 77 } });
  const c = await ClipTokenizer.fromFolder(sd2);
  assert.is(c.padId, 0);
  const p = c.encodePadded('a photo of a dog');
  assert.equal([...p.ids.slice(0, 8)], [BOS, 320, 1125, 539, 320, 1929, EOS, 0]);
  assert.is(p.ids[76], 0);

  // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
  writeFileSync(join(sd2, 'special_tokens_map.json'), JSON.stringify({ pad_token: '<|endoftext|>' }));
  assert.is((await ClipTokenizer.fromFolder(sd2)).padId, EOS);

  // added_tokens.json from textual inversion: tokens come back with their ids.
  writeFileSync(join(sd2, 'added_tokens.json'), JSON.stringify({ '<cat-toy>': 49409, '<new1>': 49408 }));
  const d = await ClipTokenizer.fromFolder(sd2);
  assert.is(d.vocabSize, 49410);
  assert.equal(d.addedTokens, ['<new1>', '<cat-toy>']);
  assert.equal(d.encode('a <cat-toy> and <new1>'), [BOS, 320, 49409, 537, 49408, EOS]);
});

t('encodePadded: 77 positions, eos / zero / id padding', () => {
  const text = 'a photo of a dog';
  const p = tok.encodePadded(text);
  assert.ok(p.ids instanceof Int32Array);
  assert.is(p.ids.length, 77);
  assert.is(p.length, 7);
  assert.is(p.truncated, false);
  assert.equal([...p.ids.slice(0, 7)], reference.cases[0].ids);
  assert.ok(p.ids.slice(7).every((v) => v === EOS));
  const z = tok.encodePadded(text, { pad: 'zero' });
  assert.equal([...z.ids.slice(0, 7)], reference.cases[0].ids);
  assert.ok(z.ids.slice(7).every((v) => v === 0));
  assert.ok(tok.encodePadded(text, { pad: 'eos' }).ids.slice(7).every((v) => v === EOS));
  assert.ok(tok.encodePadded(text, { pad: 5 }).ids.slice(7).every((v) => v === 5));
  const e = tok.encodePadded('');
  assert.is(e.length, 2);
  assert.equal([...e.ids.slice(0, 3)], [BOS, EOS, EOS]);
});

t('encodePadded: a 100-word prompt keeps start, the first 75 content tokens and end', () => {
  const words = Array.from({ length: 100 }, (_, i) => ['red', 'dog', 'in', 'a', 'field'][i % 5]).join(' ');
  const full = tok.encode(words);
  assert.is(full.length, 102);
  const p = tok.encodePadded(words);
  assert.is(p.ids.length, 77);
  assert.is(p.length, 77);
  assert.is(p.truncated, true);
  assert.equal([...p.ids], [BOS, ...full.slice(1, 76), EOS]);

  // Exactly 75 content tokens fit without truncation; 76 do not.
  const fit = Array.from({ length: 75 }, () => 'dog').join(' ');
  const f = tok.encodePadded(fit);
  assert.is(f.truncated, false);
  assert.is(f.length, 77);
  assert.equal([...f.ids], tok.encode(fit));
  assert.is(tok.encodePadded(fit + ' dog').truncated, true);

  const short = tok.encodePadded('a photo of a dog', { maxLength: 4 });
  assert.equal([...short.ids], [BOS, 320, 1125, EOS]);
  assert.is(short.truncated, true);
  assert.equal([...tok.encodePadded('a', { maxLength: 2 }).ids], [BOS, EOS]);
});

t('added tokens: new ids in order, matched whole and case-sensitively before cleanup', async () => {
  const a = await ClipTokenizer.fromBpeGz(gzPath);
  assert.equal(a.addTokens(['<new1>']), [49408]);
  assert.equal(a.addTokens(['<new2>', '<new10>']), [49409, 49410]);
  assert.is(a.vocabSize, 49411);
  assert.equal(a.addedTokens, ['<new1>', '<new2>', '<new10>']);
  assert.is(a.tokenToId('<new2>'), 49409);
  assert.equal(a.encode('photo of a <new1> dog'), [BOS, 1125, 539, 320, 49408, 1929, EOS]);
  assert.equal(a.encode('a <new1> cat'), [BOS, 320, 49408, 2368, EOS]);
  // adjacent punctuation and text, two tokens side by side, the longer token winning
  assert.equal(a.encode('A <new1>, dog.'), [BOS, 320, 49408, 267, 1929, 269, EOS]);
  assert.equal(a.encode('(<new1>)'), [BOS, 263, 49408, 264, EOS]);
  assert.equal(a.encode('<new1><new2>'), [BOS, 49408, 49409, EOS]);
  assert.equal(a.encode('<new10> and <new1>'), [BOS, 49410, 537, 49408, EOS]);
  // not matched in another case: BPE'd as plain text, as the reference does
  assert.equal(a.encode('a <NEW1> cat'), reference.cases.find((c) => c.text === 'a <new1> cat')!.ids);
  // other text is untouched
  for (const c of reference.cases.filter((c) => !c.text.includes('<new'))) assert.equal(a.encode(c.text), c.ids, c.text);
  const p = a.encodePadded('<new2> art');
  assert.equal([...p.ids.slice(0, 5)], [BOS, 49409, 794, EOS, EOS]);
  // regular-expression characters in a token are literal
  const [star] = a.addTokens(['[v*]']);
  assert.equal(a.encode('a [v*] dog [vv]'), [BOS, 320, star, 1929, ...tok.encode('[vv]').slice(1, -1), EOS]);
  const [dash] = a.addTokens(['<my-token>']);
  assert.equal(a.encode('a <my-token>'), [BOS, 320, dash, EOS]);
  // a pad id may now be an added id
  assert.is(a.encodePadded('x', { pad: star }).ids[76], star);
});

t('decode: special tokens skipped, </w> as space, bytes back to UTF-8; round trips', async () => {
  assert.is(tok.decode(reference.cases[0].ids), 'a photo of a dog');
  assert.is(tok.decode(tok.encode('Café au lait 🙂')), 'café au lait 🙂');
  assert.is(tok.decode(tok.encodePadded('a photo of a dog').ids), 'a photo of a dog');
  assert.is(tok.decode([]), '');
  // a multi-byte character split over tokens joins back
  assert.is(tok.decode(tok.encode('naïve résumé')), 'naïve résumé');
  for (const c of reference.cases) {
    const again = tok.encode(tok.decode(c.ids));
    assert.equal(again, c.ids, `round trip of ${JSON.stringify(c.text)}`);
  }
  const a = await ClipTokenizer.fromBpeGz(gzPath);
  a.addTokens(['<new1>', '<sks dog>']);
  assert.is(a.decode(a.encode('photo of a <new1> dog')), 'photo of a <new1> dog');
  assert.is(a.decode(a.encode('a <sks dog>, running')), 'a <sks dog> , running');
  assert.equal(a.encode(a.decode(a.encode('<new1><sks dog>'))), a.encode('<new1><sks dog>'));
});

/** The reference loop: merge every occurrence of the lowest-ranked pair, left to right, until none is left. */
function naiveBpe(symbols: string[], ranks: Map<string, number>): string[] {
  let word = symbols.slice();
  for (;;) {
    let best: [string, string] | undefined;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(word[i] + ' ' + word[i + 1]);
      if (r !== undefined && r < bestRank) [bestRank, best] = [r, [word[i], word[i + 1]]];
    }
    if (!best) return word;
    const next: string[] = [];
    for (let i = 0; i < word.length; i++) {
      if (i + 1 < word.length && word[i] === best[0] && word[i + 1] === best[1]) next.push(word[i] + word[++i]);
      else next.push(word[i]);
    }
    word = next;
  }
}

t('the heap merge equals the reference loop, also for odd merge tables', () => {
  const rnd = seeded(7);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  for (let trial = 0; trial < 300; trial++) {
    const symbols = Array.from({ length: 1 + Math.floor(rnd() * 24) }, () => pick(['a', 'b', 'c']));
    // Random merges over symbols and their concatenations, in random rank order,
    // including ones whose result ranks before its parts.
    const pool = ['a', 'b', 'c', 'aa', 'ab', 'ba', 'bc', 'aab', 'abab', 'ca', 'cc', 'aaa'];
    const ranks = new Map<string, number>();
    for (let i = 0; i < 14; i++) ranks.set(pick(pool) + ' ' + pick(pool), i);
    assert.equal(bpeMerge(symbols, ranks), naiveBpe(symbols, ranks), `${symbols.join('')} with ${[...ranks.keys()].join(',')}`);
  }
});

t('hostile input: a 200 000-letter word and 20 000 distinct words stay fast', () => {
  const start = Date.now();
  const word = 'ab'.repeat(100_000);
  const ids = tok.encode(word);
  assert.ok(ids.length > 2 && ids.length < 200_002);
  assert.is(tok.decode(ids), word);
  // bytes that never merge: one token per byte
  const arabic = '\u0600'.repeat(100_000);
  assert.is(tok.encode(arabic).length, 200_002);
  assert.is(tok.decode(tok.encode('!?'.repeat(100_000))), '!?'.repeat(100_000));
  const many = Array.from({ length: 20_000 }, (_, i) => `w${i.toString(36)}x`).join(' ');
  assert.is(tok.encodePadded(many).truncated, true);
  assert.ok(Date.now() - start < 20_000, `took ${Date.now() - start} ms`);
});

t('missing and corrupt files name the file and the problem', async () => {
  await assertRejects(() => ClipTokenizer.fromBpeGz(join(work, 'nope.gz')), 'INVALID_ARGUMENT', /cannot read BPE merges file/, /nope\.gz/, /no such file/);
  await assertRejects(() => ClipTokenizer.fromBpeGz(work), 'INVALID_ARGUMENT', /it is a directory/);
  await assertRejects(() => ClipTokenizer.fromBpeGz(file('plain.gz', 'i n\nt h\n')), 'INVALID_ARGUMENT', /plain\.gz' is not a gzip file/);
  const lines = gunzipSync(readFileSync(gzPath)).toString('utf8').split('\n');
  const short = file('short.gz', gzipSync(lines.slice(0, 1000).join('\n')));
  await assertRejects(() => ClipTokenizer.fromBpeGz(short), 'INVALID_ARGUMENT', /has 999 merges, expected at least 48894/);
  const bad = lines.slice();
  bad[500] = 'x y z';
  await assertRejects(() => ClipTokenizer.fromBpeGz(file('bad.gz', gzipSync(bad.join('\n')))), 'INVALID_ARGUMENT', /bad\.gz' line 501: expected two symbols/, /'x y z'/);
  const dup = lines.slice();
  dup[2] = lines[1];
  await assertRejects(() => ClipTokenizer.fromBpeGz(file('dup.gz', gzipSync(dup.join('\n')))), 'INVALID_ARGUMENT', /token 'in' is made twice/);

  const dir = writeFolder(join(work, 'good'));
  const vocab = join(dir, 'vocab.json');
  const merges = join(dir, 'merges.txt');
  await assertRejects(() => ClipTokenizer.fromFiles(join(work, 'missing.json'), merges), 'INVALID_ARGUMENT', /cannot read vocab\.json '.*missing\.json'/);
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, join(work, 'missing.txt')), 'INVALID_ARGUMENT', /cannot read merges\.txt/);
  await assertRejects(() => ClipTokenizer.fromFolder(join(work, 'empty')), 'INVALID_ARGUMENT', /cannot read vocab\.json/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v1.json', '{"a": 0,'), merges), 'INVALID_ARGUMENT', /v1\.json' is not valid JSON/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v2.json', '[1, 2]'), merges), 'INVALID_ARGUMENT', /v2\.json' must hold an object of token → id, got an array/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v3.json', '{"a": 0, "b": 1.5}'), merges), 'INVALID_ARGUMENT', /entry 'b' must map to a non-negative integer id, got number 1\.5/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v4.json', '{"a": 0, "b": 0}'), merges), 'INVALID_ARGUMENT', /entries 'a' and 'b' share id 0/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v5.json', '{"a": 0, "b": 2}'), merges), 'INVALID_ARGUMENT', /ids must run 0\.\.1 without gaps, 1 is missing/);
  await assertRejects(() => ClipTokenizer.fromFiles(file('v6.json', '{"a": 0}'), merges), 'INVALID_ARGUMENT', /vocabulary lacks the byte symbol '!'/);
  const m = readFileSync(merges, 'utf8').split('\n');
  m[10] = 'zq xv';
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, file('m1.txt', m.join('\n'))), 'INVALID_ARGUMENT', /merge 10 'zq xv' makes 'zqxv', which is not in the vocabulary/);
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, file('m2.txt', '#version: 0.2\n\n')), 'INVALID_ARGUMENT', /m2\.txt' holds no merges/);
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, file('m3.txt', '#version: 0.2\ni  n\n')), 'INVALID_ARGUMENT', /m3\.txt' line 2: expected two symbols separated by one space/);
  const v = JSON.parse(readFileSync(vocab, 'utf8')) as Record<string, number>;
  delete v['<|startoftext|>'];
  v['<|start|>'] = BOS;
  await assertRejects(() => ClipTokenizer.fromFiles(file('v7.json', JSON.stringify(v)), merges), 'INVALID_ARGUMENT', /the start token '<\|startoftext\|>' is not in the vocabulary/);
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, merges, { padToken: '<pad>' }), 'INVALID_ARGUMENT', /the pad token '<pad>' is not in the vocabulary/);
  await assertRejects(() => ClipTokenizer.fromFiles(vocab, merges, { pad: 0 } as never), 'INVALID_ARGUMENT', /unknown option 'pad'/);
  writeFileSync(join(dir, 'added_tokens.json'), JSON.stringify({ '<new1>': 49409 }));
  await assertRejects(() => ClipTokenizer.fromFolder(dir), 'INVALID_ARGUMENT', /added_tokens\.json': '<new1>' has id number 49409, expected 49408/);
  writeFileSync(join(dir, 'added_tokens.json'), JSON.stringify({ '<new1>': 49408, ' ': 49409 }));
  await assertRejects(() => ClipTokenizer.fromFolder(dir), 'INVALID_ARGUMENT', /added_tokens\.json' entry 2: .*must be a non-blank string/);
  writeFileSync(join(dir, 'added_tokens.json'), '["<new1>"]');
  await assertRejects(() => ClipTokenizer.fromFolder(dir), 'INVALID_ARGUMENT', /added_tokens\.json' must hold an object/);
  rmSync(join(dir, 'added_tokens.json'));
  writeFileSync(join(dir, 'special_tokens_map.json'), '{"pad_token": 7}');
  await assertRejects(() => ClipTokenizer.fromFolder(dir), 'INVALID_ARGUMENT', /special_tokens_map\.json': pad_token must be a string or \{ content: string \}, got number 7/);
  writeFileSync(join(dir, 'special_tokens_map.json'), 'not json');
  await assertRejects(() => ClipTokenizer.fromFolder(dir), 'INVALID_ARGUMENT', /special_tokens_map\.json' is not valid JSON/);
  await assertRejects(() => ClipTokenizer.fromBpeGz(42 as never), 'INVALID_ARGUMENT', /path must be a string, got number 42/);
  await assertRejects(() => ClipTokenizer.fromFolder(undefined as never), 'INVALID_ARGUMENT', /dir must be a string/);
});

t('bad arguments name the problem', async () => {
  await assertRejects(() => tok.encode(42 as never), 'INVALID_ARGUMENT', /encode: text must be a string, got number 42/);
  await assertRejects(() => tok.encode(null as never), 'INVALID_ARGUMENT', /got null/);
  await assertRejects(() => tok.encodePadded(['a'] as never), 'INVALID_ARGUMENT', /encodePadded: text must be a string, got an array/);
  await assertRejects(() => tok.encodePadded('a', { maxLength: 1 }), 'INVALID_ARGUMENT', /maxLength must be an integer in \[2, 65536\], got number 1/);
  await assertRejects(() => tok.encodePadded('a', { maxLength: 1e9 }), 'INVALID_ARGUMENT', /maxLength must be an integer in \[2, 65536\], got number 1000000000/);
  await assertRejects(() => tok.encodePadded('a', { maxLength: 7.5 }), 'INVALID_ARGUMENT', /maxLength/);
  await assertRejects(() => tok.encodePadded('a', { pad: 'bos' as never }), 'INVALID_ARGUMENT', /pad must be 'eos', 'zero' or an id in \[0, 49408\), got 'bos'/);
  await assertRejects(() => tok.encodePadded('a', { pad: 49408 }), 'INVALID_ARGUMENT', /pad must be/);
  await assertRejects(() => tok.encodePadded('a', { length: 77 } as never), 'INVALID_ARGUMENT', /unknown option 'length'/);
  await assertRejects(() => tok.decode([320, 49408]), 'INVALID_ARGUMENT', /ids\[1\] = number 49408 is not an id in \[0, 49408\)/);
  await assertRejects(() => tok.decode([1.5]), 'INVALID_ARGUMENT', /ids\[0\] = number 1\.5/);
  await assertRejects(() => tok.decode('320' as never), 'INVALID_ARGUMENT', /ids must be an array or typed array, got '320'/);

  const a = await ClipTokenizer.fromBpeGz(gzPath);
  await assertRejects(() => a.addTokens(['<new1>', '<new1>']), 'INVALID_ARGUMENT', /token '<new1>' is already in the vocabulary/);
  await assertRejects(() => a.addTokens(['a</w>']), 'INVALID_ARGUMENT', /token 'a<\/w>' is already in the vocabulary/);
  await assertRejects(() => a.addTokens(['<ok>', '']), 'INVALID_ARGUMENT', /tokens\[1\] must be a non-blank string, got ''/);
  await assertRejects(() => a.addTokens([3] as never), 'INVALID_ARGUMENT', /tokens\[0\] must be a non-blank string, got number 3/);
  await assertRejects(() => a.addTokens('<new1>' as never), 'INVALID_ARGUMENT', /tokens must be an array of strings/);
  // a failed call adds nothing
  assert.is(a.vocabSize, 49408);
  a.addTokens(['<new1>']);
  await assertRejects(() => a.addTokens(['<new1>']), 'INVALID_ARGUMENT', /'<new1>' is already in the vocabulary/);
  assert.is(a.vocabSize, 49409);
});

/** A tokenizers-format tokenizer.json as transformers saves CLIP's, built from the gz tokenizer. */
function tokenizerJson(pairs = false): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (let id = 0; id < 49408; id++) vocab[tok.idToToken(id)!] = id;
  const lines = gunzipSync(readFileSync(gzPath)).toString('utf8').split('\n').slice(1, 48895);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(BOS, '<|startoftext|>'), special(EOS, '<|endoftext|>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', behavior: 'Removed', invert: true }, { type: 'ByteLevel', add_prefix_space: false }] },
    post_processor: { type: 'RobertaProcessing', sep: ['<|endoftext|>', EOS], cls: ['<|startoftext|>', BOS] },
    decoder: { type: 'ByteLevel' },
    model: {
      type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false,
      vocab,
      merges: pairs ? lines.map((l) => l.split(' ')) : lines,
    },
  };
}

t('tokenizer.json (merges as strings or pairs) tokenizes every case as vocab.json + merges.txt; fromFolder falls back to it', async () => {
  for (const pairs of [false, true]) {
    const p = file(pairs ? 'tok-pairs.json' : 'tok-strings.json', JSON.stringify(tokenizerJson(pairs)));
    const j = await ClipTokenizer.fromTokenizerJson(p);
    assert.is(j.vocabSize, 49408);
    assert.equal([j.bosId, j.eosId, j.padId], [BOS, EOS, EOS]);
    for (const c of reference.cases) assert.equal(j.encode(c.text), c.ids, JSON.stringify(c.text));
    assert.equal(j.idToToken(512), 'in');
    assert.is(j.decode(j.encode('a photo of a dog')), 'a photo of a dog');
  }
  // Only tokenizer.json in tokenizer/: used; the config's pad token wins over padding.pad_token.
  const dir = join(work, 'tj/tokenizer');
  mkdirSync(dir, { recursive: true });
  const json = tokenizerJson();
  json.padding = { strategy: 'BatchLongest', pad_id: 0, pad_token: '!' };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  const a = await ClipTokenizer.fromFolder(join(work, 'tj'));
  assert.is(a.padId, 0, 'padding.pad_token');
  for (const c of reference.cases) assert.equal(a.encode(c.text), c.ids, JSON.stringify(c.text));
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '<|endoftext|>' }));
  assert.is((await ClipTokenizer.fromFolder(dir)).padId, EOS, 'special_tokens_map.json wins');
  // Added tokens past the vocabulary (textual inversion) come back with their ids; vocab.json + merges.txt win when present.
  (json.added_tokens as unknown[]).push({ id: 49409, content: '<cat-toy>', special: false }, { id: 49408, content: '<new1>', special: false });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  const b = await ClipTokenizer.fromFolder(dir);
  assert.equal(b.addedTokens, ['<new1>', '<cat-toy>']);
  assert.equal(b.encode('a <cat-toy> and <new1>'), [BOS, 320, 49409, 537, 49408, EOS]);
  writeFolder(dir);
  assert.equal((await ClipTokenizer.fromFolder(dir)).addedTokens, [], 'vocab.json + merges.txt preferred');
});

t('corrupt tokenizer.json: errors name the file and the field', async () => {
  const bad = async (name: string, edit: (j: Record<string, unknown>, m: Record<string, unknown>) => void, ...patterns: RegExp[]) => {
    const j = tokenizerJson();
    edit(j, j.model as Record<string, unknown>);
    const p = file(name, JSON.stringify(j));
    await assertRejects(() => ClipTokenizer.fromTokenizerJson(p), 'INVALID_ARGUMENT', new RegExp(`${name.replace('.', '\\.')}'`), ...patterns);
  };
  await bad('tj1.json', (_, m) => { m.type = 'WordPiece'; }, /model\.type must be 'BPE' \(CLIP's tokenizer\), got 'WordPiece'/);
  await bad('tj2.json', (j) => { j.model = [1]; }, /model must be an object, got an array/);
  await bad('tj3.json', (_, m) => { delete m.vocab; }, /model\.vocab must hold an object of token → id, got undefined/);
  await bad('tj4.json', (_, m) => { (m.vocab as Record<string, unknown>).a = 'x'; }, /model\.vocab: entry 'a' must map to a non-negative integer id, got 'x'/);
  await bad('tj5.json', (_, m) => { m.merges = 'i n'; }, /model\.merges must be an array, got 'i n'/);
  await bad('tj6.json', (_, m) => { (m.merges as unknown[])[7] = 'i  n'; }, /model\.merges\[7\] must be "left right" or \[left, right\]/, /'i  n'/);
  await bad('tj7.json', (_, m) => { (m.merges as unknown[])[3] = ['i', 5]; }, /model\.merges\[3\] must be .* got an array/);
  await bad('tj8.json', (_, m) => { (m.merges as unknown[])[9] = 'zq xv'; }, /merge 10 'zq xv' makes 'zqxv', which is not in the vocabulary/);
  await bad('tj9.json', (_, m) => { m.merges = []; }, /model\.merges holds no merges/);
  await bad('tj10.json', (_, m) => { m.end_of_word_suffix = '@@'; }, /model\.end_of_word_suffix must be '<\/w>'/);
  await bad('tj11.json', (j) => { j.added_tokens = { a: 1 }; }, /added_tokens must be an array, got a/);
  await bad('tj12.json', (j) => { (j.added_tokens as unknown[]).push({ id: -1, content: '<x>' }); }, /added_tokens\[2\]\.id must be a non-negative integer, got number -1/);
  await bad('tj13.json', (j) => { (j.added_tokens as unknown[]).push({ id: 49408, content: 7 }); }, /added_tokens\[2\]\.content must be a non-empty string, got number 7/);
  await bad('tj14.json', (j) => { (j.added_tokens as unknown[]).push({ id: 49500, content: '<x>' }); }, /added_tokens: '<x>' has id number 49500, expected 49408/);
  await bad('tj15.json', (j) => { (j.added_tokens as unknown[]).push('<x>'); }, /added_tokens\[2\] must be an object \{ id, content \}, got '<x>'/);
  await bad('tj16.json', (j) => { j.padding = { pad_token: 0 }; }, /padding\.pad_token must be a string, got number 0/);
  await bad('tj17.json', (j) => { j.padding = { pad_token: '<pad>' }; }, /the pad token '<pad>' is not in the vocabulary/);
  await bad('tj18.json', (j) => { (j.added_tokens as unknown[]).push({ id: 49408, content: ' ' }); }, /added_tokens\[2\]: .*must be a non-blank string/);
  await assertRejects(() => ClipTokenizer.fromTokenizerJson(file('tj19.json', '{"model": ')), 'INVALID_ARGUMENT', /tj19\.json' is not valid JSON/);
  await assertRejects(() => ClipTokenizer.fromTokenizerJson(file('tj20.json', '[]')), 'INVALID_ARGUMENT', /tj20\.json' must hold an object, got an array/);
  await assertRejects(() => ClipTokenizer.fromTokenizerJson(join(work, 'none.json')), 'INVALID_ARGUMENT', /cannot read tokenizer\.json '.*none\.json': no such file/);
  await assertRejects(() => ClipTokenizer.fromTokenizerJson(3 as never), 'INVALID_ARGUMENT', /fromTokenizerJson: path must be a string, got number 3/);
  await assertRejects(() => ClipTokenizer.fromTokenizerJson(join(work, 'x.json'), { pad: '!' } as never), 'INVALID_ARGUMENT', /unknown option 'pad'/);
});

t.run();
