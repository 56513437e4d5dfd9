// The imprint command line, run as a user runs it (a child process): usage,
// exit codes, errors that name the problem without a stack trace, and the
// commands that need no trained model.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const t = suite('cli');
const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'imprint-cli-'));

function imprint(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'lib/cli/main.ts'), ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, IMPRINT_NUM_THREADS: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
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
});

t('mistakes exit 1 with a message naming the problem, never a stack trace', () => {
  const cases: Array<[string[], RegExp]> = [
    [['paint'], /imprint: unknown command 'paint'/],
    [['eval', '--bogus'], /imprint eval: Unknown option '--bogus'/],
    [['generate'], /imprint generate: give at least one --prompt 'text'/],
    [['generate', '--prompt', 'a cat', '--model', join(work, 'nope')], /is not a diffusers model folder \(no model_index\.json\)/],
    [['validate-metrics', '--samples', 'many'], /--samples must be a number, got 'many'/],
    [['validate-metrics', '--samples', '0'], /samples/],
    [['generate', '--prompt', 'a cat', '--device', 'gpu'], /device/],
    [['generate', '--prompt', 'a cat', '--dtype', 'f64'], /dtype/],
    [['pretrain-world', '--recipe', 'best'], /--recipe must be 'shipped', got 'best'/],
    [['pretrain-world', '--recipe', 'shipped', '--steps', '10'], /--steps does not apply with --recipe/],
  ];
  for (const [args, message] of cases) {
    const r = imprint(...args);
    assert.is(r.code, 1, args.join(' '));
    assert.match(r.err, message);
    assert.not.match(r.err, /\n\s+at /, `${args.join(' ')}: no stack trace`);
  }
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
