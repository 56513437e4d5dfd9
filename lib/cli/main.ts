#!/usr/bin/env node
// The `imprint` command line: a thin layer over the API (each command parses
// its flags, calls one API entry point, prints a result). Errors print their
// message and exit with status 1, never a stack trace for a user mistake.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { ImprintError } from '../errors.js';
import { COMMANDS, type Command } from './commands.js';

function usage(): string {
  const lines = ['usage: imprint <command> [options]', '       imprint --version', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(18)} ${c.summary}`);
  lines.push('', "run 'imprint <command> --help' for a command's options");
  return lines.join('\n');
}

function commandHelp(name: string, c: Command): string {
  const lines = [`usage: imprint ${name} ${c.usage ?? '[options]'}`, '', c.summary, ''];
  for (const [flag, o] of Object.entries(c.options)) {
    const arg = o.type === 'string' ? ` <${o.arg ?? 'value'}>` : '';
    lines.push(`  --${flag}${arg}`.padEnd(30) + ` ${o.help}${o.default !== undefined ? ` (default ${o.default})` : ''}`);
  }
  return lines.join('\n');
}

/** The package's version, from its package.json (two folders up from lib/cli/ and from dist/cli/ alike). */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/**
 * parseArgs reads a value that starts with a dash as another option, so
 * '--num -3' would fail as "ambiguous" before --num's own check could say
 * what is wrong; a string flag and a following negative number become one
 * argument ('--num=-3').
 */
export function joinNegativeValues(args: readonly string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') return [...out, ...args.slice(i)];
    const flag = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (flag !== undefined && Object.hasOwn(options, flag) && options[flag].type === 'string' && /^-\.?\d/.test(args[i + 1] ?? '')) {
      out.push(`${a}=${args[++i]}`);
    } else {
      out.push(a);
    }
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 1 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`imprint: unknown command '${name}'\n\n${usage()}\n`);
    return 1;
  }
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const [flag, o] of Object.entries(command.options)) options[flag] = { type: o.type, ...(o.multiple ? { multiple: true } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(rest, options), options, allowPositionals: command.positionals === true, strict: true });
  } catch (e) {
    // One line, as for every other mistake (node's messages may span several).
    process.stderr.write(`imprint ${name}: ${(e as Error).message.replace(/\s*\n\s*/g, ' ')} (see 'imprint ${name} --help')\n`);
    return 1;
  }
  if (parsed.values.help) {
    process.stdout.write(commandHelp(name, command) + '\n');
    return 0;
  }
  try {
    await command.run(parsed.values as Record<string, string | boolean | string[] | undefined>, parsed.positionals);
    return 0;
  } catch (e) {
    if (e instanceof ImprintError) {
      process.stderr.write(`imprint ${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

// Run when executed directly (bin or `node lib/cli/main.ts`), not when imported by tests.
const invoked = process.argv[1] ?? '';
if (/(^|[\\/])(main\.(ts|js)|imprint)$/.test(invoked)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
