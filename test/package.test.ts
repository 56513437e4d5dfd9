// The package as users see it: the built entry point exports the same API as
// lib/, and the hand-written native typings match the addon's real surface.
import { readFileSync } from 'node:fs';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import * as api from '../lib/index.js';
import { native } from '../lib/native.js';

const pkg = suite('package');

pkg('the published entry point (dist/, via the package name) exports the same API as lib/', async () => {
  const built = (await import('imprint')) as Record<string, unknown>;
  assert.equal(Object.keys(built).sort(), Object.keys(api).sort());
  const t = (built.tensor as typeof api.tensor)([1, 2]);
  assert.equal(Array.from(t.dataSync()), [1, 2]);
});

pkg('two copies in one process (dist/ and lib/) share the addon: a native error is an ImprintError of both', async () => {
  const built = (await import('imprint')) as unknown as typeof api;
  built.tensor([1]);  // the built copy has loaded the addon, registering its own error class last
  for (const [name, mod] of [['lib', api], ['dist', built]] as const) {
    try {
      mod.readSafetensorsHeader('/nonexistent/imprint-test.safetensors');
      assert.unreachable(`${name}: no error`);
    } catch (e) {
      assert.ok(e instanceof api.ImprintError, `${name}: instanceof lib's ImprintError`);
      assert.ok(e instanceof built.ImprintError, `${name}: instanceof dist's ImprintError`);
    }
  }
  assert.not.ok(new Error('x') instanceof api.ImprintError, 'a plain Error is not one');
});

pkg('typings/native.d.ts declares exactly the functions the addon exports', () => {
  const dts = readFileSync(new URL('../typings/native.d.ts', import.meta.url), 'utf8');
  const body = dts.slice(dts.indexOf('export interface NativeAddon'));
  const declared = [...body.matchAll(/^ {2}(\w+)[(:]/gm)].map((m) => m[1]).sort();
  assert.equal(declared, Object.keys(native).sort());
  const handle = [...dts.slice(dts.indexOf('class TensorHandle'), dts.indexOf('export interface NativeBuildInfo')).matchAll(/^ {2}(?:readonly )?(\w+)[(:]/gm)].map((m) => m[1]);
  const t = api.tensor([1]);
  for (const member of handle) assert.ok(member in t.handle, `TensorHandle.${member}`);
});

pkg('ImprintError is an Error subclass with a code', () => {
  const e = new api.ImprintError('boom', 'INTERNAL');
  assert.instance(e, Error);
  assert.is(e.name, 'ImprintError');
  assert.is(e.code, 'INTERNAL');
});

pkg.run();
