// ClipTokenizer.save: the folder it writes loads back (fromFolder) as the same
// tokenizer, byte for byte in its vocabulary and merges, added tokens included.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { assertRejects } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const t = suite('tokenizer.save');
const gzPath = join(REFERENCE, 'clip/bpe_simple_vocab_16e6.txt.gz');
const cases = (JSON.parse(readFileSync(join(REFERENCE, 'clip/tokenizer-cases.json'), 'utf8')) as { cases: Array<{ text: string; ids: number[] }> }).cases;
const work = mkdtempSync(join(tmpdir(), 'imprint-toksave-'));

t('save → fromFolder gives the same ids for every reference case, and added tokens keep their ids', async () => {
  const tok = await ClipTokenizer.fromBpeGz(gzPath);
  const ids = tok.addTokens(['<new1>', '<new2>']);
  const dir = join(work, 'tokenizer');
  await tok.save(dir);
  assert.equal(readdirSync(dir).sort(), ['added_tokens.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json']);
  // merges.txt holds the reference merges in their order.
  const merges = readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n');
  const ref = gunzipSync(readFileSync(gzPath)).toString('utf8').split('\n').slice(1, 48895);
  assert.is(merges[0], '#version: 0.2');
  assert.equal(merges.slice(1, -1), ref);
  const back = await ClipTokenizer.fromFolder(work);
  assert.is(back.vocabSize, tok.vocabSize);
  assert.equal(back.addedTokens, ['<new1>', '<new2>']);
  assert.is(back.tokenToId('<new2>'), ids[1]);
  for (const c of cases) assert.equal(back.encode(c.text), tok.encode(c.text), c.text);
  assert.equal(back.encode('a <new1> dog'), tok.encode('a <new1> dog'));
});

t('save refuses a bad folder argument and leaves no temporary files', async () => {
  const tok = await ClipTokenizer.fromBpeGz(gzPath);
  await assertRejects(() => tok.save('' as string), 'INVALID_ARGUMENT', /dir must be a folder path/);
  await assertRejects(() => tok.save(3 as never), 'INVALID_ARGUMENT', /dir must be a folder path/);
  const dir = join(work, 'plain');
  await tok.save(dir);
  assert.ok(readdirSync(dir).every((f) => !f.includes('.tmp-')));
  assert.not.ok(readdirSync(dir).includes('added_tokens.json'), 'no added tokens, no added_tokens.json');
});

t.after(() => rmSync(work, { recursive: true, force: true }));
t.run();
