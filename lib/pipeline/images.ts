// Image ↔ tensor conversion through sharp: files or encoded buffers become
// f32 [1, 3, H, W] in [-1, 1] (the VAE's input range), and generated
// [N, 3, H, W] tensors (any float dtype; the async functions also read them
// from a GPU) become PNGs, written atomically so a crash never leaves a
// half-written image behind.
import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import sharp from 'sharp';

import { ImprintError, invalidArgument } from '../errors.js';
import { tensor } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkDevice, checkInt, checkOptions, checkPath, checkTensor, describe } from '../validate.js';

export type ImageFit = 'cover' | 'contain' | 'fill' | 'inside' | 'outside';

export interface ImageToTensorOptions {
  width: number;
  height: number;
  /** How the image is fitted to width × height (sharp's resize fit; default 'cover', a centred crop). */
  fit?: ImageFit;
  /** Where the tensor goes: 'cpu' (default) or 'cuda:N' (decoded on the host, then copied). */
  device?: string;
}

const FITS: readonly ImageFit[] = ['cover', 'contain', 'fill', 'inside', 'outside'];
// Keeps a typo from asking sharp for gigapixel buffers.
const MAX_SIDE = 16384;

/** Reads an image file or encoded buffer (PNG, JPEG, WebP, ...) as f32 [1, 3, height, width] in [-1, 1]. */
export async function imageToTensor(input: string | Buffer, options: ImageToTensorOptions): Promise<Tensor<'f32'>> {
  const fn = 'imageToTensor';
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) throw invalidArgument(`${fn}: input must be a file path or a Buffer, got ${describe(input)}`);
  const o = checkOptions(fn, options, ['width', 'height', 'fit', 'device']);
  const device = checkDevice(fn, o.device);
  const width = checkInt(fn, 'width', o.width, 1, MAX_SIDE);
  const height = checkInt(fn, 'height', o.height, 1, MAX_SIDE);
  const fit = o.fit ?? 'cover';
  if (!FITS.includes(fit as ImageFit)) throw invalidArgument(`${fn}: fit must be one of ${FITS.join(', ')}, got ${describe(fit)}`);
  const what = typeof input === 'string' ? `'${input}'` : `buffer of ${input.length} bytes`;
  let data: Buffer;
  let info: sharp.OutputInfo;
  try {
    // Alpha is flattened onto white and grey becomes RGB, so every image has 3 channels.
    ({ data, info } = await sharp(input, { failOn: 'error' })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(width, height, { fit: fit as ImageFit, background: '#000000' })
      .raw()
      .toBuffer({ resolveWithObject: true }));
  } catch (e) {
    throw invalidArgument(`${fn}: cannot decode ${what}: ${(e as Error).message}`);
  }
  // 'inside'/'outside' keep the aspect ratio, so the size may differ from the request.
  if (info.width !== width || info.height !== height) {
    throw invalidArgument(`${fn}: ${what} resized to ${info.width}×${info.height} with fit '${fit}', expected ${width}×${height} (use 'cover', 'contain' or 'fill')`);
  }
  if (info.channels !== 3) throw new ImprintError(`${fn}: ${what} decoded to ${info.channels} channels, expected 3`, 'INTERNAL');
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = data[p * 3 + c] / 127.5 - 1;
  }
  const host = tensor(out, { shape: [1, 3, height, width] });
  if (device === 'cpu') return host;
  try {
    return await host.to(device);
  } finally {
    host.dispose();
  }
}

interface ImageBatch {
  n: number;
  h: number;
  w: number;
  data: Float32Array;
}

function checkImages(fn: string, images: unknown): Tensor {
  const t = checkTensor(fn, 'images', images);
  if (t.disposed) throw new ImprintError(`${fn}: images has been disposed`, 'DISPOSED');
  if (t.shape.length !== 4 || t.shape[1] !== 3) throw new ImprintError(`${fn}: images must be [N, 3, H, W], got ${t.dtype}[${t.shape.join(', ')}]`, 'SHAPE_MISMATCH');
  if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') throw new ImprintError(`${fn}: images must be f32, f16 or bf16, got ${t.dtype} (cast it first)`, 'DTYPE_MISMATCH');
  return t;
}

/** The images' values as f32 on the host (half types widen exactly). */
function hostImages(fn: string, images: unknown): ImageBatch {
  const t = checkImages(fn, images);
  if (t.device !== 'cpu') throw new ImprintError(`${fn}: images must be on the cpu, got ${t.device} (move it with .to('cpu'), or use tensorToImages, which reads any device)`, 'DEVICE_MISMATCH');
  const [n, , h, w] = t.shape;
  return { n, h, w, data: t.dataSync() as Float32Array };
}

async function anyDeviceImages(fn: string, images: unknown): Promise<ImageBatch> {
  const t = checkImages(fn, images);
  const [n, , h, w] = t.shape;
  return { n, h, w, data: (await t.data()) as Float32Array };
}

/** Each image of [N, 3, H, W] in [-1, 1] (on the CPU) as HWC RGB bytes (values clamped, then rounded; NaN becomes 0). */
export function tensorToRgb(images: Tensor): Uint8Array[] {
  return rgbOf(hostImages('tensorToRgb', images));
}

function rgbOf({ n, h, w, data }: ImageBatch): Uint8Array[] {
  const plane = h * w;
  return Array.from({ length: n }, (_, i) => {
    const rgb = new Uint8Array(3 * plane);
    const base = i * 3 * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = Math.round((data[base + c * plane + p] + 1) * 127.5);
        rgb[p * 3 + c] = v > 255 ? 255 : v > 0 ? v : 0;
      }
    }
    return rgb;
  });
}

/** Each image of [N, 3, H, W] in [-1, 1], on any device, as a PNG (values clamped, then rounded to 8 bits; NaN becomes 0). */
export async function tensorToImages(images: Tensor): Promise<Buffer[]> {
  const batch = await anyDeviceImages('tensorToImages', images);
  const rgbs = rgbOf(batch);
  const { h, w } = batch;
  return Promise.all(rgbs.map((rgb) => sharp(Buffer.from(rgb.buffer), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer()));
}

/**
 * The one grid maker: HWC RGB images (all width × height) as one PNG,
 * `columns` wide, row by row, each cell upscaled `scale`× (nearest), with
 * `gap` pixels of black between cells.
 */
async function gridPng(images: readonly Uint8Array[], width: number, height: number, columns: number, gap: number, scale: number): Promise<Buffer> {
  const cw = width * scale, ch = height * scale;
  const cols = Math.min(columns, images.length);
  const rows = Math.ceil(images.length / cols);
  const cells = await Promise.all(images.map((img) => {
    const cell = sharp(Buffer.from(img), { raw: { width, height, channels: 3 } });
    return (scale === 1 ? cell : cell.resize(cw, ch, { kernel: 'nearest' })).png().toBuffer();
  }));
  return sharp({ create: { width: cols * cw + (cols - 1) * gap, height: rows * ch + (rows - 1) * gap, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite(cells.map((input, i) => ({ input, left: (i % cols) * (cw + gap), top: Math.floor(i / cols) * (ch + gap) })))
    .png()
    .toBuffer();
}

/**
 * All images of f32 [N, 3, H, W] in one PNG grid, `columns` wide (default:
 * about square), row by row, with `gap` pixels of black between cells,
 * each cell upscaled `scale`× (nearest; default 1).
 */
export async function imageGrid(images: Tensor, options: { columns?: number; gap?: number; scale?: number } = {}): Promise<Buffer> {
  const fn = 'imageGrid';
  const o = checkOptions(fn, options, ['columns', 'gap', 'scale']);
  const scale = checkInt(fn, 'scale', o.scale, 1, 64, 1);
  const [n] = checkImages(fn, images).shape;
  if (n === 0) throw invalidArgument(`${fn}: there are no images (the batch is empty)`);
  const columns = o.columns === undefined ? Math.ceil(Math.sqrt(n)) : o.columns;
  const gap = o.gap === undefined ? 0 : o.gap;
  if (!Number.isSafeInteger(columns) || (columns as number) < 1) throw invalidArgument(`${fn}: columns must be a positive integer, got ${describe(columns)}`);
  if (!Number.isSafeInteger(gap) || (gap as number) < 0) throw invalidArgument(`${fn}: gap must be a non-negative integer, got ${describe(gap)}`);
  const batch = await anyDeviceImages(fn, images);
  return gridPng(rgbOf(batch), batch.w, batch.h, columns as number, gap as number, scale);
}

/** RGB images (HWC bytes, all r×r) as a PNG grid, `columns` wide, each cell upscaled `scale`× (nearest), 2 pixels apart. */
export async function rgbGrid(images: readonly Uint8Array[], resolution: number, columns: number, scale = 4): Promise<Buffer> {
  return gridPng(images, resolution, resolution, columns, 2, scale);
}

/**
 * Writes each image as a PNG. `pathPattern` holds '{i}' (replaced by the
 * image's index) unless there is exactly one image. Each file is written
 * to a temporary name beside it and renamed into place. Returns the paths.
 */
export async function saveImages(images: Tensor, pathPattern: string): Promise<string[]> {
  const fn = 'saveImages';
  checkPath(fn, 'pathPattern', pathPattern);
  const n = images instanceof Tensor && !images.disposed ? images.shape[0] : 0;
  if (n > 1 && !pathPattern.includes('{i}')) {
    throw invalidArgument(`${fn}: pathPattern '${pathPattern}' must contain '{i}' to name ${n} images`);
  }
  const pngs = await tensorToImages(images);
  const paths = pngs.map((_, i) => pathPattern.replaceAll('{i}', String(i)));
  for (let i = 0; i < pngs.length; i++) {
    const tmp = `${paths[i]}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, pngs[i], { flag: 'wx' });
      await rename(tmp, paths[i]);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw invalidArgument(`${fn}: cannot write '${paths[i]}': ${(e as Error).message}`);
    }
  }
  return paths;
}
