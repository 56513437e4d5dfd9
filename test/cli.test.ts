// The imprint command line, run as a user runs it (a child process): usage,
// exit codes, errors that name the problem on one line without a stack trace
// (checked before any work), progress on stderr, and nothing written into the
// package unless named.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { worldModelDir } from '../lib/world/model-path.js';
import { tinyModelFolder } from './cd-fixture.js';

const t = suite('cli');
const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'imprint-cli-'));

// A timeout, so a command that should have refused but starts training fails the test instead of hanging it.
function imprint(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'lib/cli/main.ts'), ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, IMPRINT_NUM_THREADS: '1' }, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The refusal every user mistake gets: exit 1, one line `imprint <command>: <message>` on stderr, the message matching. */
function assertRefused(args: string[], message: RegExp): { out: string; err: string } {
  const r = imprint(...args);
  const what = args.join(' ');
  assert.is(r.code, 1, `${what}: exit status (${r.err})`);
  assert.match(r.err, new RegExp(`^imprint ${args[0]}: [^\\n]+\\n$`), `${what}: one line, got ${JSON.stringify(r.err)}`);
  assert.not.match(r.err, /imprint [\w-]+: imprint /, `${what}: one prefix`);
  assert.match(r.err, message, what);
  return r;
}

/** Every file under `dir` with its size and modification time: to show a folder was not written. */
function snapshot(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((f) => {
    const st = statSync(join(dir, f));
    return `${f} ${st.size} ${st.mtimeMs}`;
  });
}

t('usage lists every command; --help per command shows its flags and defaults', () => {
  const r = imprint('--help');
  assert.is(r.code, 0);
  for (const c of ['demo', 'generate', 'eval', 'validate-metrics', 'pretrain-world']) assert.match(r.out, new RegExp(`\\n  ${c} `));
  const none = imprint();
  assert.is(none.code, 1, 'no command is a usage error');
  const g = imprint('generate', '--help');
  assert.is(g.code, 0);
  assert.match(g.out, /--prompt <text> +prompt \(repeat for several\)/);
  assert.match(g.out, /--steps <n> +denoising steps \(default 25\)/);
  assert.match(g.out, /--device <dev> +'cpu' or 'cuda:0'/);
  assert.match(g.out, /--quiet +no progress on stderr/);
  assert.match(imprint('train', '--help').out, /--lr <x> +base learning rate \(default 1e-5 with --model, 0\.001 on the embedded world model; tuning-encoder: the encoder file's, else 2e-3\)/);
  assert.match(imprint('pretrain-world', '--help').out, /--out <dir> +where the diffusers folder goes, required/);
});

t('--version and -v print the version of package.json', () => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const r = imprint(flag);
    assert.is(r.code, 0, flag);
    assert.is(r.out, `${version}\n`, flag);
  }
  assert.match(imprint('--help').out, /imprint --version/);
});

t('mistakes exit 1 with one line naming the problem, never a stack trace', () => {
  const unknown = imprint('paint');
  assert.is(unknown.code, 1);
  assert.match(unknown.err, /imprint: unknown command 'paint'/);
  const cases: Array<[string[], RegExp]> = [
    [['eval', '--bogus'], /imprint eval: Unknown option '--bogus'.*'imprint eval --help'/],
    [['generate'], /imprint generate: give at least one --prompt 'text'/],
    [['generate', '--prompt', 'a cat', '--model', join(work, 'nope')], /is not a diffusers model folder \(no model_index\.json\)/],
    [['validate-metrics', '--samples', 'many'], /--samples must be a number, got 'many'/],
    [['validate-metrics', '--samples', '0'], /--samples must be a positive integer, got 0/],
    [['generate', '--prompt', 'a cat', '--device', 'gpu'], /device/],
    [['generate', '--prompt', 'a cat', '--dtype', 'f64'], /--dtype must be f32, f16 or bf16, got 'f64'/],
    [['pretrain-world', '--recipe', 'best'], /--recipe must be 'shipped', got 'best'/],
    [['pretrain-world', '--recipe', 'shipped', '--steps', '10'], /--steps does not apply with --recipe/],
    // Negative numbers reach the flag's own check instead of the parser's "ambiguous" text.
    [['generate', '--prompt', 'a cat', '--num', '-3'], /: --num must be a positive integer, got -3$/m],
    [['generate', '--prompt', 'a cat', '--steps=-2'], /--steps must be a positive integer, got -2/],
    [['eval', '--seed', '-1'], /--seed must be a non-negative integer, got -1/],
    [['validate-metrics', '--samples', '-5'], /--samples must be a positive integer, got -5/],
    [['train', '--class', 'dog', '--images', work, '--lr', '-1e-5'], /--lr must be above 0, got -1e-5/],
    [['pretrain-world', '--out', join(work, 'm'), '--batch-size', '-.5'], /--batch-size must be a positive integer, got -\.5/],
    // The CLI's advice, not the API's ("cast to f32 first").
    [['generate', '--prompt', 'a cat', '--dtype', 'f16'], /--dtype f16 needs a GPU .*use --dtype f32/],
    [['eval', '--prompts', 'missing.txt'], /^imprint eval: --prompts missing\.txt: no such file$/m],
    [['eval', '--prompts', work], /--prompts .*: is a folder, not a file/],
    [['generate', '--prompt', 'a cat', '--out', join(work, 'no-folder', 'x.png')], /--out .*x\.png: folder .*no-folder does not exist/],
    [['generate', '--prompt', 'a cat', '--grid', join(work, 'no-folder', 'g.png')], /--grid .*g\.png: folder .*no-folder does not exist/],
    [['train', '--class', 'dog', '--images', work, '--out', join(work, 'no-folder', 'c.safetensors')], /--out .*: folder .*no-folder does not exist/],
    [['eval', '--concept', 'unicorn'], /--concept must be one of star, ring, .*, got 'unicorn'/],
  ];
  for (const [args, message] of cases) {
    const r = assertRefused(args, message);
    assert.not.match(r.err, /\.tmp/, `${args.join(' ')}: no temporary file named`);
  }
  // Checked before the 12-prompt drawing (nothing printed yet), with one prefix.
  const demo = assertRefused(['demo', '--teach', 'unicorn'], /^imprint demo: --teach must be one of star, ring, cross, heart, striped-square, checker-circle, got 'unicorn'$/m);
  assert.is(demo.out, '');
});

t('--width and --height must be multiples of the VAE factor; the pixel-space world model takes any size', async () => {
  const model = await tinyModelFolder();  // the tiny SD's VAE halves each side
  assertRefused(['generate', '--model', model, '--prompt', 'a cat', '--width', '33', '--steps', '1'], /--width 33 must be a multiple of 2 \(the model's VAE shrinks images 2× per side\)/);
  assertRefused(['generate', '--model', model, '--prompt', 'a cat', '--height', '15', '--steps', '1'], /--height 15 must be a multiple of 2/);
  assertRefused(['generate', '--prompt', 'a cat', '--width', '0'], /--width must be a positive integer, got 0/);
  const ok = imprint('generate', '--model', model, '--prompt', 'a cat', '--width', '34', '--height', '18', '--steps', '1', '--quiet', '--out', 'tiny.png');
  assert.is(ok.code, 0, ok.err);
  const odd = imprint('generate', '--prompt', 'a red circle', '--width', '33', '--steps', '1', '--quiet', '--out', 'odd.png');
  assert.is(odd.code, 0, odd.err);
  assert.ok(existsSync(join(work, 'odd.png')));
});

t('generate --excite: Attend-and-Excite on the world model; a word missing from the prompt and a scale without words are refused', () => {
  const ok = imprint('generate', '--prompt', 'a red circle on the left and a blue square on the right', '--excite', 'circle', '--excite', 'square', '--steps', '2', '--quiet', '--out', 'excite.png');
  assert.is(ok.code, 0, ok.err);
  assert.ok(existsSync(join(work, 'excite.png')));
  assertRefused(['generate', '--prompt', 'a red circle', '--excite', 'star', '--steps', '2'], /excite word 'star' is not in the prompt/);
  assertRefused(['generate', '--prompt', 'a red circle', '--excite-scale', '5'], /--excite-scale needs --excite/);
});

t('pretrain-world: --out is required, so nothing is written into the package; a folder holding a model needs --force', () => {
  const packaged = worldModelDir();
  const before = [snapshot(packaged), snapshot(join(packaged, '..', 'world-pretrain'))];
  // Settings that, were --out still defaulting to the package, would only write a checkpoint into a scratch folder.
  const scratch = join(work, 'scratch');
  assertRefused(['pretrain-world', '--steps', '2', '--max-steps-this-run', '1', '--work-dir', scratch], /give --out <dir>/);
  assertRefused(['pretrain-world', '--recipe', 'shipped', '--work-dir', scratch], /give --out <dir>/);
  assert.equal([snapshot(packaged), snapshot(join(packaged, '..', 'world-pretrain'))], before, 'the package is untouched');
  assert.not.ok(existsSync(scratch));

  const out = join(work, 'has-model');
  mkdirSync(out);
  writeFileSync(join(out, 'model_index.json'), '{}');
  const tiny = ['--steps', '1', '--batch-size', '1', '--work-dir', join(work, 'has-model-work'), '--quiet'];
  assertRefused(['pretrain-world', '--out', out, ...tiny], /--out .*has-model already holds a model \(model_index\.json\); give --force to overwrite it/);
  assertRefused(['pretrain-world', '--recipe', 'shipped', '--out', out], /already holds a model/);
  assert.is(readFileSync(join(out, 'model_index.json'), 'utf8'), '{}', 'not overwritten');
  assert.not.ok(existsSync(join(out, 'unet')));
  // With --force the same run goes ahead and writes the model.
  const forced = imprint('pretrain-world', '--out', out, ...tiny, '--force');
  assert.is(forced.code, 0, forced.err);
  assert.is(JSON.parse(forced.out).steps, 1);
  assert.ok(existsSync(join(out, 'unet', 'diffusion_pytorch_model.safetensors')));
  assert.is.not(readFileSync(join(out, 'model_index.json'), 'utf8'), '{}');
});

t('progress goes to stderr (plain lines off a terminal) and --quiet silences it; stdout keeps the result', () => {
  const g = imprint('generate', '--prompt', 'a red circle', '--steps', '2', '--out', 'p.png');
  assert.is(g.code, 0, g.err);
  assert.is(g.out, 'p.png\n');
  assert.match(g.err, /^generate 1\/2 +\[#+\.+\] .*ETA/m);
  assert.match(g.err, /^generate 2\/2 +\[#+\] .*ETA 0s$/m);
  assert.not.match(g.err, /\r/, 'no carriage returns off a terminal');
  const quiet = imprint('generate', '--prompt', 'a red circle', '--steps', '2', '--out', 'q.png', '--quiet');
  assert.is(quiet.code, 0, quiet.err);
  assert.is(quiet.err, '');
  assert.is(quiet.out, 'q.png\n');
  // eval counts the steps of every prompt.
  writeFileSync(join(work, 'prompts.txt'), 'a red circle\na blue square\n');
  const e = imprint('eval', '--prompts', 'prompts.txt', '--num', '1', '--steps', '2', '--json');
  assert.is(e.code, 0, e.err);
  assert.match(e.err, /^eval 4\/4 /m);
  assert.is(JSON.parse(e.out).rows.length, 2);
  assert.is(imprint('eval', '--prompts', 'prompts.txt', '--num', '1', '--steps', '2', '--json', '--quiet').err, '');
  // demo: its drawing phase.
  const d = imprint('demo', '--num', '1', '--steps', '1', '--out', 'demo.png');
  assert.is(d.code, 0, d.err);
  assert.match(d.err, /^drawing 12\/12 /m);
  assert.ok(existsSync(join(work, 'demo.png')));
  // A legend beside the grid names each row: the 12 evaluation prompts.
  const legend = readFileSync(join(work, 'demo.txt'), 'utf8').trimEnd().split('\n');
  assert.is(legend.length, 12);
  assert.is(legend[0], 'row 1: a red circle');
  assert.match(d.out, /demo\.txt names each row/);
});

t('validate-metrics prints the validation table', () => {
  const r = imprint('validate-metrics', '--samples', '30');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /metric validation: 30 scenes at 32×32, seed 0/);
  assert.match(r.out, /text, own caption +\d\.\d{3}/);
  assert.match(r.out, /AUC \d\.\d{3}/);
});

t.after(() => rmSync(work, { recursive: true, force: true }));
t.run();
