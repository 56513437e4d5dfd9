// Training images for Custom Diffusion: a folder, a list of files or encoded
// buffers, decoded to RGB once, with same-name .txt captions where a file
// has one (per-image instance prompts; regularization captions). Every
// failure names the file it is about.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';

import { invalidArgument } from '../errors.js';
import { describe } from '../validate.js';

/** Decoded RGB pixels of one source image. */
export interface RgbImage {
  /** Where it came from, for messages (a path or 'images[2]'). */
  name: string;
  data: Buffer;
  width: number;
  height: number;
}

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

interface ImageEntry {
  name: string;
  input: string | Buffer;
}

/** The entries of an image source, in order: a folder's files sorted by name, or the list as given. */
function imageEntries(fn: string, what: string, source: unknown): ImageEntry[] {
  if (typeof source === 'string') return listImageFiles(fn, what, source).map((f) => ({ name: f, input: f }));
  if (Array.isArray(source)) {
    if (source.length === 0) throw invalidArgument(`${fn}: ${what} must not be empty`);
    return source.map((s: unknown, i) => {
      if (typeof s === 'string') return { name: s, input: s };
      if (s instanceof Uint8Array) return { name: `${what}[${i}]`, input: Buffer.from(s.buffer, s.byteOffset, s.byteLength) };
      throw invalidArgument(`${fn}: ${what}[${i}] must be an image path or an encoded image Buffer, got ${describe(s)}`);
    });
  }
  throw invalidArgument(`${fn}: ${what} must be a folder path, a list of image paths or a list of image Buffers, got ${describe(source)}`);
}

/**
 * The caption of an image file: its same-name .txt (trimmed), or undefined
 * when there is none. An empty caption file is an error, not a silent default.
 */
export function captionBeside(fn: string, file: string): string | undefined {
  const txt = file.slice(0, file.length - extname(file).length) + '.txt';
  if (!existsSync(txt)) return undefined;
  const caption = readFileSync(txt, 'utf8').trim();
  if (caption.length === 0) throw invalidArgument(`${fn}: caption ${txt} is empty`);
  return caption;
}

/** An image of a source and its caption file's text, when it is a file with a same-name .txt. */
export interface SourceImage {
  image: RgbImage;
  caption?: string;
}

/** Every image of `source`, decoded, with each image file's same-name .txt caption where there is one (Buffers have none); `what` names the option in messages (e.g. "concepts[0].images"). */
export async function loadImagesWithCaptions(fn: string, what: string, source: unknown): Promise<SourceImage[]> {
  const out: SourceImage[] = [];
  for (const e of imageEntries(fn, what, source)) {
    const image = await decodeImage(fn, e.name, e.input);
    const caption = typeof e.input === 'string' ? captionBeside(fn, e.input) : undefined;
    out.push(caption === undefined ? { image } : { image, caption });
  }
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
  for (const f of files) out.push({ image: await decodeImage(fn, f, f), caption: captionBeside(fn, f) ?? fallback });
  return out;
}

/** The image centre-cropped to a square and resized to `resolution` (Lanczos): [3, R, R] pixels in [-1, 1], channel-major. */
export async function squarePixels(image: RgbImage, resolution: number): Promise<Float32Array> {
  const { data } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(resolution, resolution, { fit: 'cover' }).raw().toBuffer({ resolveWithObject: true });
  const plane = resolution * resolution;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[c * plane + p] = data[p * 3 + c] / 127.5 - 1;
  return out;
}
