// safetensors: round trips of every dtype, the reference checkpoints read
// exactly as their headers say, f16/bf16 bit patterns, and hostile files that
// must each fail with a clear INVALID_ARGUMENT (never a crash).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../lib/io/safetensors.js';
import { loadConcept } from '../lib/concepts/concept-file.js';
import { importDiffusers } from '../lib/methods/custom-diffusion/diffusers-format.js';
import { assertRejects, seeded } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const tiny = join(REFERENCE, 'parity/sd1-tiny');
const dir = mkdtempSync(join(tmpdir(), 'imprint-st-'));
const t = suite('safetensors');
const vals = (x: Tensor): unknown[] => Array.from(x.dataSync() as ArrayLike<unknown>);
t.after(() => rmSync(dir, { recursive: true, force: true }));

/** An independent header parse: length prefix + JSON.parse, as Python's safetensors reads it. */
function jsHeader(path: string): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; meta?: Record<string, string>; dataStart: number; bytes: Buffer } {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const meta = header.__metadata__;
  delete header.__metadata__;
  return { header, meta, dataStart: 8 + n, bytes };
}

/** A file made of an explicit header (string or object), data bytes and, optionally, a forged length. */
function craft(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), length?: bigint): string {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

t('every dtype round-trips with its values, shapes (scalar, empty) and a sorted, padded header', async () => {
  const path = join(dir, 'all.safetensors');
  const src = {
    'z.f32': tensor(new Float32Array([1.5, -2, 3.25, 1e-30, -0, 7]), { shape: [2, 3] }),
    'a.f16': tensor(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]), { shape: [4], dtype: 'f16' }),
    'b.bf16': tensor(new Uint16Array([0x3f80, 0x4049, 0xff80]), { shape: [3, 1], dtype: 'bf16' }),
    'c.i32': tensor(new Int32Array([-2147483648, 0, 2147483647]), { shape: [1, 3] }),
    'd.i64': tensor(new BigInt64Array([-(2n ** 63n), 5n, 2n ** 62n])),
    'e.u8': tensor(new Uint8Array([0, 128, 255])),
    'scalar': tensor(new Float32Array([42]), { shape: [] }),
    'empty': tensor(new Float32Array(0), { shape: [0, 3] }),
  };
  await saveSafetensors(path, src);
  const { header, dataStart, bytes } = jsHeader(path);
  assert.is((dataStart - 8) % 8, 0, 'header padded to a multiple of 8');
  assert.equal(Object.keys(header), Object.keys(src).sort(), 'entries in name order');
  assert.equal(header['a.f16'], { dtype: 'F16', shape: [4], data_offsets: [0, 8] });
  assert.equal(header['scalar'], { dtype: 'F32', shape: [], data_offsets: [header['scalar'].data_offsets[0], header['scalar'].data_offsets[0] + 4] });
  assert.is(bytes.length, dataStart + header['z.f32'].data_offsets[1], 'data ends at the last tensor');
  assert.is(bytes.readUInt16LE(dataStart + 2), 0xc000, 'f16 bits stored as is');

  const info = readSafetensorsHeader(path);
  assert.equal(info.tensors['b.bf16'], { dtype: 'BF16', shape: [3, 1], offsets: header['b.bf16'].data_offsets });
  const back = await loadSafetensors(path);
  assert.equal([...back.keys()], Object.keys(src).sort());
  for (const [name, orig] of Object.entries(src)) {
    const got = back.get(name)!;
    assert.is(got.dtype, orig.dtype, `${name} dtype`);
    assert.equal(got.shape, orig.shape, `${name} shape`);
    assert.equal(vals(got), vals(orig), `${name} values`);
  }
  assert.equal(vals(back.get('a.f16')!), [1, -2, 65504, 2 ** -24]);
  assert.equal(vals(back.get('b.bf16')!), [1, 3.140625, -Infinity]);
  assert.ok(Object.is(back.get('z.f32')!.dataSync()[4], -0), 'negative zero kept');
});

t('metadata round-trips, including quotes, newlines and non-ASCII', async () => {
  const path = join(dir, 'meta.safetensors');
  const metadata = { format: 'pt', note: 'a "quoted"\nline\\ with \u0001 and ünïcödé 🎨', '': 'empty key' };
  await saveSafetensors(path, { w: tensor([1, 2]) }, metadata);
  assert.equal(jsHeader(path).meta, metadata, 'Python-style parse agrees');
  assert.equal({ ...readSafetensorsHeader(path).metadata }, metadata);
});

t('the sd1-tiny UNet reads exactly as its header says, values included', async () => {
  const path = join(tiny, 'unet/diffusion_pytorch_model.safetensors');
  const { header, dataStart, bytes } = jsHeader(path);
  const info = readSafetensorsHeader(path);
  assert.equal(Object.keys(info.tensors), Object.keys(header).sort());
  assert.ok(Object.keys(header).length > 100, 'a real model');
  for (const [name, e] of Object.entries(header)) {
    assert.equal(info.tensors[name], { dtype: e.dtype, shape: e.shape, offsets: e.data_offsets }, name);
  }
  const names = ['conv_in.weight', 'conv_out.bias'].filter((n) => n in header);
  assert.is(names.length, 2);
  const loaded = await loadSafetensors(path, { names });
  for (const name of names) {
    const [b, e] = header[name].data_offsets;
    const expect = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart + b, bytes.byteOffset + dataStart + e));
    const got = loaded.get(name)!;
    assert.equal(got.shape, header[name].shape);
    assert.equal(vals(got), Array.from(expect), `${name} values`);
  }
  // Loading everything as f16 rounds each value the same way tensor() does.
  const half = await loadSafetensors(path, { names: ['conv_in.weight'], dtype: 'f16' });
  const ref = tensor(loaded.get('conv_in.weight')!.dataSync(), { shape: header['conv_in.weight'].shape, dtype: 'f16' });
  assert.equal(vals(half.get('conv_in.weight')!), vals(ref));
});

t('the unet parity case keeps its I64 tensor and metadata', async () => {
  const path = join(tiny, 'unet_case.safetensors');
  const { header, meta, dataStart, bytes } = jsHeader(path);
  assert.equal({ ...readSafetensorsHeader(path).metadata }, meta);
  const ints = Object.entries(header).filter(([, e]) => e.dtype === 'I64');
  assert.ok(ints.length > 0);
  const all = await loadSafetensors(path);
  assert.is(all.size, Object.keys(header).length);
  for (const [name, e] of ints) {
    const got = all.get(name)!;
    assert.is(got.dtype, 'i64');
    const expect = new BigInt64Array(bytes.buffer.slice(bytes.byteOffset + dataStart + e.data_offsets[0], bytes.byteOffset + dataStart + e.data_offsets[1]));
    assert.equal(vals(got), Array.from(expect), name);
  }
});

t('f16, bf16 and f64 convert to f32 on load bit-exactly; small integers widen', async () => {
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0x8000, 0x3555, 0xfc00]);
  const bf16 = new Uint16Array([0x3f80, 0x4049, 0x0001, 0xc2f7]);
  const f64 = new Float64Array([0.1, -1e300, 3]);
  const i8 = new Int8Array([-128, 127, -1]);
  const i16 = new Int16Array([-32768, 32767]);
  const bools = new Uint8Array([1, 0, 1]);
  const parts = [f16, bf16, f64, i8, i16, bools].map((a) => new Uint8Array(a.buffer));
  const offs: number[] = [0];
  for (const p of parts) offs.push(offs[offs.length - 1] + p.length);
  const types = ['F16', 'BF16', 'F64', 'I8', 'I16', 'BOOL'];
  const header = Object.fromEntries(types.map((d, i) => [d.toLowerCase(), { dtype: d, shape: [parts[i].length / ([2, 2, 8, 1, 2, 1][i])], data_offsets: [offs[i], offs[i + 1]] }]));
  const path = craft('convert.safetensors', header, Buffer.concat(parts));
  const all = await loadSafetensors(path, { names: ['f16', 'bf16', 'f64'], dtype: 'f32' });
  assert.equal(vals(all.get('f16')!), [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, Infinity, -0, 0.333251953125, -Infinity]);
  assert.ok(Object.is(all.get('f16')!.dataSync()[6], -0));
  assert.equal(vals(all.get('bf16')!), [1, 3.140625, 2 ** -133, -123.5]);
  assert.equal(vals(all.get('f64')!), Array.from(Float32Array.from(f64)));
  const natural = await loadSafetensors(path, { names: ['f64', 'i8', 'i16', 'bool'] });
  assert.is(natural.get('f64')!.dtype, 'f32');
  assert.is(natural.get('i8')!.dtype, 'i32');
  assert.equal(vals(natural.get('i8')!), [-128, 127, -1]);
  assert.equal(vals(natural.get('i16')!), [-32768, 32767]);
  assert.is(natural.get('bool')!.dtype, 'u8');
  assert.equal(vals(natural.get('bool')!), [1, 0, 1]);
  const wide = await loadSafetensors(path, { names: ['i16'], dtype: 'i64' });
  assert.equal(vals(wide.get('i16')!), [-32768n, 32767n]);
  await assertRejects(() => loadSafetensors(path, { names: ['i8'], dtype: 'u8' }), 'INVALID_ARGUMENT', /convert\.safetensors/, /'i8' element 0 = -128 does not fit in u8/);
  await assertRejects(() => loadSafetensors(path, { names: ['f16'], dtype: 'i32' }), 'INVALID_ARGUMENT', /tensor 'f16' is F16 and cannot be loaded as i32/);
  await assertRejects(() => loadSafetensors(path, { names: ['nope'] }), 'INVALID_ARGUMENT', /convert\.safetensors: has no tensor 'nope'/);
});

t('names from the file cannot reach object prototypes', async () => {
  const path = join(dir, 'proto.safetensors');
  await saveSafetensors(path, new Map([['__proto__', tensor([1])], ['constructor', tensor([2])]]));
  const info = readSafetensorsHeader(path);
  assert.equal(Object.keys(info.tensors), ['__proto__', 'constructor']);
  assert.is(Object.getPrototypeOf(info.tensors), null);
  const back = await loadSafetensors(path);
  assert.equal(vals(back.get('__proto__')!), [1]);
});

const f32x4 = new Uint8Array(16);
const hostile: [string, () => string, RegExp[]][] = [
  ['empty file', () => { const p = join(dir, 'empty.st'); writeFileSync(p, ''); return p; }, [/0 bytes, too short/]],
  ['empty header', () => craft('nohead.st', ''), [/must be a JSON object/]],
  ['truncated (5 bytes)', () => { const p = join(dir, 'trunc.st'); writeFileSync(p, Buffer.from([1, 0, 0, 0, 0])); return p; }, [/5 bytes, too short/]],
  ['header length beyond the file', () => craft('long.st', '{}', undefined, 1000n), [/header length 1000 is larger than the rest of the file \(2 bytes\)/]],
  ['header length 2^63', () => craft('huge.st', '{}', undefined, 2n ** 63n), [/header length 9223372036854775808/]],
  ['invalid JSON', () => craft('json.st', '{"a": {"dtype": "F32",'), [/invalid header JSON/]],
  ['not an object', () => craft('array.st', '[1, 2]'), [/must be a JSON object/]],
  ['trailing garbage', () => craft('trail.st', '{} x'), [/unexpected text after/]],
  ['deep nesting', () => craft('deep.st', '{"a":' + '['.repeat(100000) + ']'.repeat(100000) + '}'), [/nested deeper than 64/]],
  ['invalid UTF-8', () => craft('utf8.st', Buffer.from('{"\xc3(": {}}', 'latin1')), [/header is not valid UTF-8 \(at byte 2\)/]],
  ['overlong UTF-8', () => craft('overlong.st', Buffer.from('{"\xc0\xaf": {}}', 'latin1')), [/header is not valid UTF-8 \(at byte 2\)/]],
  ['header over 100 MB', () => { const p = craft('sparse.st', '{}', undefined, 100_000_001n); truncateSync(p, 100_000_100); return p; }, [/header length 100000001 exceeds the 100000000-byte limit/]],
  ['entry not an object', () => craft('entry.st', { w: [1, 2] }), [/tensor 'w' must be an object, got an array/]],
  ['lone surrogate', () => craft('surr.st', '{"\\ud800": {}}'), [/lone high surrogate/]],
  ['duplicate key', () => craft('dup.st', '{"w": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}, "w": {"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), [/duplicate key 'w'/]],
  ['data_offsets past the end', () => craft('past.st', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(12)), [/tensor 'w' has data_offsets \[0, 16\] past the end of the data \(12 bytes\)/]],
  ['begin after end', () => craft('order.st', { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, f32x4), [/tensor 'w'.*begin after end/]],
  ['overlapping tensors', () => craft('overlap.st', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32x4), [/tensor 'b' \(bytes 4\.\.12\) overlaps tensor 'a'/]],
  ['size mismatch with shape', () => craft('size.st', { 'unet.conv_in.weight': { dtype: 'F32', shape: [320, 4, 3, 3], data_offsets: [0, 16] } }, f32x4), [/tensor 'unet\.conv_in\.weight' has data_offsets \[0, 16\] but shape \[320, 4, 3, 3\] of F32 needs 46080 bytes/]],
  ['unknown dtype', () => craft('dtype.st', { w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, f32x4), [/tensor 'w' has unknown dtype 'F8_E4M3'/]],
  ['negative dimension', () => craft('neg.st', { w: { dtype: 'F32', shape: [-1, 4], data_offsets: [0, 16] } }, f32x4), [/tensor 'w' shape\[0\] must be a non-negative integer, got -1/]],
  ['fractional dimension', () => craft('frac.st', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32x4), [/shape\[0\] must be a non-negative integer, got 1\.5/]],
  ['shape product overflow', () => craft('ovf.st', '{"w": {"dtype":"F32","shape":[4294967296, 4294967296, 16],"data_offsets":[0,0]}}', f32x4), [/tensor 'w' has shape \[4294967296, 4294967296, 16\] whose size overflows/]],
  ['offset above 2^64', () => craft('big.st', '{"w": {"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}', f32x4), [/data_offsets\[1\] 18446744073709551616 is too large/]],
  ['missing field', () => craft('miss.st', { w: { dtype: 'F32', shape: [1] } }, f32x4), [/tensor 'w' lacks 'data_offsets'/]],
  ['non-string metadata', () => craft('meta.st', { __metadata__: { step: 5 } }), [/__metadata__ 'step' must be a string, got a number/]],
];

t('hostile files fail with INVALID_ARGUMENT naming the file and the problem', async () => {
  for (const [what, make, patterns] of hostile) {
    const path = make();
    const file = new RegExp(path.split('/').pop()!.replace(/\./g, '\\.'));
    try {
      await assertRejects(() => readSafetensorsHeader(path), 'INVALID_ARGUMENT', file, ...patterns);
      await assertRejects(() => loadSafetensors(path), 'INVALID_ARGUMENT', file, ...patterns);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
  }
  await assertRejects(() => readSafetensorsHeader(join(dir, 'absent.safetensors')), 'INVALID_ARGUMENT', /absent\.safetensors: cannot open/);
  await assertRejects(() => loadSafetensors(dir), 'INVALID_ARGUMENT', /not a regular file/);
});

t('every truncation and 400 seeded byte corruptions of a valid file load or fail cleanly', async () => {
  const good = join(dir, 'fuzz-src.safetensors');
  await saveSafetensors(good, { a: tensor([1, 2, 3]), b: tensor(new Int32Array([4, 5])), c: tensor(new Uint16Array([0x3c00]), { dtype: 'f16' }) }, { k: 'v' });
  const bytes = readFileSync(good);
  const path = join(dir, 'fuzz.safetensors');
  const attempt = async (): Promise<'ok' | 'rejected'> => {
    try {
      const all = await loadSafetensors(path);
      for (const x of all.values()) x.dataSync();
      return 'ok';
    } catch (e) {
      const err = e as Error & { code?: string };
      assert.is(err.name, 'ImprintError', err.message);
      assert.is(err.code, 'INVALID_ARGUMENT', err.message);
      assert.ok(err.message.startsWith(path + ': '), `names the file: ${err.message}`);
      return 'rejected';
    }
  };
  for (let n = 0; n < bytes.length; n++) {
    writeFileSync(path, bytes.subarray(0, n));
    assert.is(await attempt(), 'rejected', `truncated to ${n} bytes`);
  }
  const next = seeded(7);
  let rejected = 0;
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  for (let i = 0; i < 400; i++) {
    const copy = Buffer.from(bytes);
    const at = Math.floor(next() * headerEnd);
    copy[at] = Math.floor(next() * 256);
    writeFileSync(path, copy);
    if ((await attempt()) === 'rejected') rejected++;
  }
  assert.ok(rejected > 200, `most header corruptions are caught (${rejected}/400)`);
});

t('a failed save leaves no partial file and the target unchanged', async () => {
  const w = { w: tensor([1, 2, 3]) };
  // Missing directory: nothing is created anywhere.
  const missing = join(dir, 'no-such-dir', 'x.safetensors');
  await assertRejects(() => saveSafetensors(missing, w), 'INVALID_ARGUMENT', /x\.safetensors/, /cannot create/);
  assert.not.ok(existsSync(join(dir, 'no-such-dir')));
  // The rename fails (target is a non-empty directory): the temp file is removed, the target untouched.
  const sub = join(dir, 'occupied');
  mkdirSync(join(sub, 'target.safetensors'), { recursive: true });
  writeFileSync(join(sub, 'target.safetensors', 'keep'), 'x');
  await assertRejects(() => saveSafetensors(join(sub, 'target.safetensors'), w), 'INVALID_ARGUMENT', /cannot replace the file/);
  assert.equal(readdirSync(sub), ['target.safetensors'], 'no .tmp- file left');
  assert.equal(readdirSync(join(sub, 'target.safetensors')), ['keep']);
  // A bad tensor fails before anything is written: the old file survives byte for byte.
  const path = join(dir, 'keep.safetensors');
  await saveSafetensors(path, w);
  const before = readFileSync(path);
  const gone = tensor([5]);
  gone.dispose();
  await assertRejects(() => saveSafetensors(path, { a: tensor([1]), b: gone }), 'DISPOSED');
  await assertRejects(() => saveSafetensors(path, { a: 1 as never }), 'INVALID_ARGUMENT', /tensor 'a' must be a Tensor/);
  await assertRejects(() => saveSafetensors(path, { __metadata__: tensor([1]) }), 'INVALID_ARGUMENT', /'__metadata__' is reserved/);
  await assertRejects(() => saveSafetensors(path, w, { n: 3 as never }), 'INVALID_ARGUMENT', /metadata 'n' must be a string/);
  assert.equal(readFileSync(path), before);
  // A successful overwrite replaces it completely.
  await saveSafetensors(path, { v: tensor([9]) });
  assert.equal(Object.keys(readSafetensorsHeader(path).tensors), ['v']);
  assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
});

t('options are checked', async () => {
  const path = join(dir, 'opts.safetensors');
  await saveSafetensors(path, { w: tensor([1]) });
  await assertRejects(() => loadSafetensors(path, { names: 'w' as never }), 'INVALID_ARGUMENT', /names must be an array of strings/);
  await assertRejects(() => loadSafetensors(path, { names: ['w', 'w'] }), 'INVALID_ARGUMENT', /duplicates/);
  await assertRejects(() => loadSafetensors(path, { dtype: 'f8' as never }), 'INVALID_ARGUMENT', /dtype must be one of/);
  await assertRejects(() => loadSafetensors(path, { bogus: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'bogus'/);
  await assertRejects(() => loadSafetensors(''), 'INVALID_ARGUMENT', /path must be a non-empty string/);
  await assertRejects(() => saveSafetensors(path, [] as never), 'INVALID_ARGUMENT', /tensors must be an object or Map/);
  await assertRejects(() => loadSafetensors(path, { device: 'gpu' as never }), 'INVALID_ARGUMENT', /device must be 'cpu', 'cuda' or 'cuda:N'/);
  const cpu = await loadSafetensors(path, { device: 'cpu' });
  assert.is(cpu.get('w')!.device, 'cpu');
});

t('a pickle file handed to any safetensors reader is refused with the conversion hint, the path named once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'imprint-pickle-'));
  try {
    // Pickle protocol 2 and a zip (torch.save's format) under a .safetensors name, and a .bin.
    const proto = join(dir, 'a.safetensors');
    writeFileSync(proto, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e, 0, 0, 0, 0]));
    const zip = join(dir, 'b.safetensors');
    writeFileSync(zip, Buffer.from('PK\u0003\u0004rest of a zip file'));
    const bin = join(dir, 'c.bin');
    writeFileSync(bin, 'anything');
    for (const path of [proto, zip, bin]) {
      for (const read of [() => readSafetensorsHeader(path), () => loadSafetensors(path), () => loadConcept(path)]) {
        await assertRejects(async () => read(), 'INVALID_ARGUMENT', /pickle checkpoints are refused/, /safe_serialization|save_file/);
      }
      try {
        await loadConcept(path);
      } catch (e) {
        assert.is((e as Error).message.split(path).length, 2, `the path once in: ${(e as Error).message.slice(0, 120)}`);
      }
    }
    const cd = join(dir, 'cd');
    mkdirSync(cd);
    writeFileSync(join(cd, 'pytorch_custom_diffusion_weights.safetensors'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e, 0, 0, 0, 0]));
    const unet = await loadSafetensors(join(tiny, 'unet', 'diffusion_pytorch_model.safetensors'));
    await assertRejects(() => importDiffusers(cd, unet), 'INVALID_ARGUMENT', /pickle checkpoints are refused/);
    for (const w of unet.values()) w.dispose();
    // Not a pickle: the reader's own error stands.
    const junk = join(dir, 'd.safetensors');
    writeFileSync(junk, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 9, 10]));
    await assertRejects(async () => readSafetensorsHeader(junk), 'INVALID_ARGUMENT', /header/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
