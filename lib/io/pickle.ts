// PyTorch pickle checkpoints (.bin/.ckpt/.pt/.pth, or zip/pickle bytes under
// any name) are never opened: loading one can run arbitrary code. Every
// reader that meets one says so and how to convert it, instead of a bare
// "not a safetensors file".
import { closeSync, openSync, readSync } from 'node:fs';
import { extname } from 'node:path';

export const PICKLE_EXT = ['.bin', '.ckpt', '.pt', '.pth'];

/** The refusal with the conversion recipe; `cls` adds the from_pretrained/save_pretrained line for a diffusers/transformers folder. */
export function pickleHint(what: string, cls?: { library: string; cls: string; dir: string }): string {
  const pretrained = cls
    ? ` With ${cls.library}: \`from ${cls.library} import ${cls.cls}; ${cls.cls}.from_pretrained(${JSON.stringify(cls.dir)}).save_pretrained(${JSON.stringify(cls.dir)}, safe_serialization=True)\`.`
    : '';
  return (
    `${what}: pickle checkpoints are refused (loading them can run arbitrary code), so the file was not read. ` +
    `Convert it to safetensors first in a trusted Python environment.${pretrained} ` +
    `For a plain state dict: \`python -c "import torch; from safetensors.torch import save_file; ` +
    `sd = torch.load('IN.bin', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); ` +
    `save_file({k: v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')"\`.`
  );
}

/**
 * Why `path` is a pickle checkpoint (its extension, or its first bytes: zip
 * 'PK' or pickle protocol 0x80), or undefined when it is not one or cannot be
 * read (the caller's own error then stands).
 */
export function pickleReason(path: string): string | undefined {
  const ext = extname(path).toLowerCase();
  if (PICKLE_EXT.includes(ext)) return `${path} is a pickle checkpoint (${ext})`;
  const head = Buffer.alloc(2);
  try {
    const fd = openSync(path, 'r');
    try {
      if (readSync(fd, head, 0, 2, 0) < 2) return undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  return (head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80 ? `${path} is a PyTorch pickle/zip file, not safetensors` : undefined;
}
