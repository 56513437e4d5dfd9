// Training images for Custom Diffusion: a folder, a list of files or encoded
// buffers, decoded to RGB once; captioned folders (image + same-name .txt)
// for regularization. Every failure names the file it is about.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';

import { invalidArgument } from '../errors.js';
import { describe } from '../validate.js';
import type { RgbImage } from './augment.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'];

/** A folder path, a list of image paths, or a list of encoded images (PNG/JPEG/WebP buffers). */
export type ImageSource = string | ReadonlyArray<string | Buffer | Uint8Array>;

/** The image files of a folder, sorted by name (so a folder always gives the same order). */
export function listImageFiles(fn: string, what: string, dir: string): string[] {
  if (!existsSync(dir)) throw invalidArgument(`${fn}: ${what} folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw invalidArgument(`${fn}: ${what} ${dir} is not a folder`);
  const files = readdirSync(dir).filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase())).sort().map((f) => join(dir, f));
  if (files.length === 0) throw invalidArgument(`${fn}: ${what} folder ${dir} holds no images (${IMAGE_EXTENSIONS.join(', ')})`);
  return files;
}

/** Decodes one image to RGB (alpha dropped, EXIF orientation applied). */
export async function decodeImage(fn: string, name: string, input: string | Buffer): Promise<RgbImage> {
  let bytes: Buffer;
  if (typeof input === 'string') {
    try {
      bytes = readFileSync(input);
    } catch (e) {
      throw invalidArgument(`${fn}: cannot read image ${name}: ${(e as Error).message}`);
    }
  } else {
    bytes = input;
  }
  try {
    const { data, info } = await sharp(bytes).rotate().removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { name, data, width: info.width, height: info.height };
  } catch (e) {
    throw invalidArgument(`${fn}: image ${name} could not be decoded (PNG, JPEG or WebP expected): ${(e as Error).message}`);
  }
}

/** Every image of `source`, decoded; `what` names the option in messages (e.g. "concepts[0].images"). */
export async function loadImages(fn: string, what: string, source: unknown): Promise<RgbImage[]> {
  let entries: Array<{ name: string; input: string | Buffer }>;
  if (typeof source === 'string') {
    entries = listImageFiles(fn, what, source).map((f) => ({ name: f, input: f }));
  } else if (Array.isArray(source)) {
    if (source.length === 0) throw invalidArgument(`${fn}: ${what} must not be empty`);
    entries = source.map((s: unknown, i) => {
      if (typeof s === 'string') return { name: s, input: s };
      if (s instanceof Uint8Array) return { name: `${what}[${i}]`, input: Buffer.from(s.buffer, s.byteOffset, s.byteLength) };
      throw invalidArgument(`${fn}: ${what}[${i}] must be an image path or an encoded image Buffer, got ${describe(s)}`);
    });
  } else {
    throw invalidArgument(`${fn}: ${what} must be a folder path, a list of image paths or a list of image Buffers, got ${describe(source)}`);
  }
  const out: RgbImage[] = [];
  for (const e of entries) out.push(await decodeImage(fn, e.name, e.input));
  return out;
}

/** A regularization image and its caption. */
export interface CaptionedImage {
  image: RgbImage;
  caption: string;
}

/**
 * A folder of regularization images with captions: each image's caption is
 * the same-name .txt file (trimmed); an image without one gets `fallback`.
 */
export async function loadCaptionedFolder(fn: string, what: string, dir: string, fallback: string, limit: number): Promise<CaptionedImage[]> {
  const files = listImageFiles(fn, what, dir).slice(0, limit);
  const out: CaptionedImage[] = [];
  for (const f of files) {
    const txt = f.slice(0, f.length - extname(f).length) + '.txt';
    let caption = fallback;
    if (existsSync(txt)) {
      caption = readFileSync(txt, 'utf8').trim();
      if (caption.length === 0) throw invalidArgument(`${fn}: caption ${txt} is empty`);
    }
    out.push({ image: await decodeImage(fn, f, f), caption });
  }
  return out;
}
