// The tuning encoder's file: its parameters as safetensors (f32) with the
// spec, the class word and the base model's fingerprint in the metadata, so
// an encoder is refused for a model it was not pretrained on, and optionally
// the personalization settings measured to work with it (as a diffusers model
// carries its scheduler config): personalize uses them unless told otherwise.
import { ImprintError, invalidArgument } from '../../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../io/safetensors.js';
import type { Tensor } from '../../tensor.js';
import { TuningEncoder, type TuningEncoderSpec } from './model.js';

export interface EncoderFileInfo {
  classWord: string;
  baseFingerprint: string;
  /** Pretraining settings, as recorded. */
  settings: Record<string, string>;
  /** Personalization defaults for this encoder (each unset one: the method's default). */
  tuning?: EncoderTuning;
}

/** Personalization settings an encoder file can carry (see PersonalizeOptions). */
export interface EncoderTuning {
  lr?: number;
  batchSize?: number;
  pullWeight?: number;
}

const TUNING_LIMITS: Readonly<Record<keyof EncoderTuning, readonly [number, number, boolean]>> = {
  lr: [0, 1, false], batchSize: [1, 64, true], pullWeight: [0, 1e6, false],
};

/** Checks a tuning record (from a caller or a file); `where` prefixes the errors. */
export function checkEncoderTuning(where: string, value: unknown): EncoderTuning {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidArgument(`${where}: tuning must be an object { lr, batchSize, pullWeight }, got ${JSON.stringify(value)}`);
  const out: EncoderTuning = {};
  for (const [k, v] of Object.entries(value)) {
    const lim = TUNING_LIMITS[k as keyof EncoderTuning];
    if (!lim) throw invalidArgument(`${where}: tuning has an unknown key '${k}' (known: ${Object.keys(TUNING_LIMITS).join(', ')})`);
    const [lo, hi, integer] = lim;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
      throw invalidArgument(`${where}: tuning.${k} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    }
    out[k as keyof EncoderTuning] = v;
  }
  return out;
}

/** Writes the encoder (atomically: a temporary file, then a rename). */
export async function saveEncoder(path: string, encoder: TuningEncoder, info: EncoderFileInfo): Promise<void> {
  const tuning = info.tuning === undefined ? undefined : checkEncoderTuning(`saveEncoder ${path}`, info.tuning);
  await saveSafetensors(path, encoder.params as Map<string, Tensor>, {
    format: 'imprint-tuning-encoder', version: '1', spec: JSON.stringify(encoder.spec), class_word: info.classWord,
    base_fingerprint: info.baseFingerprint, settings: JSON.stringify(info.settings), ...(tuning ? { tuning: JSON.stringify(tuning) } : {}),
  });
}

/** Reads an encoder file; errors name the file and what is wrong with it. */
export async function loadEncoder(path: string): Promise<{ encoder: TuningEncoder; info: EncoderFileInfo }> {
  const meta = readSafetensorsHeader(path).metadata;
  if (meta.format !== 'imprint-tuning-encoder') throw invalidArgument(`${path} is not a tuning encoder file (metadata 'format' is ${JSON.stringify(meta.format ?? null)})`);
  if (meta.version !== '1') throw invalidArgument(`${path}: tuning encoder file version ${meta.version} is not supported (this Imprint reads version 1)`);
  let spec: TuningEncoderSpec, settings: Record<string, string>, tuning: unknown;
  try {
    spec = JSON.parse(meta.spec ?? '') as TuningEncoderSpec;
    settings = JSON.parse(meta.settings ?? '{}') as Record<string, string>;
    tuning = meta.tuning === undefined ? undefined : JSON.parse(meta.tuning);
  } catch (e) {
    throw invalidArgument(`${path}: metadata 'spec', 'settings' or 'tuning' is not valid JSON (${(e as Error).message})`);
  }
  const checkedTuning = tuning === undefined ? undefined : checkEncoderTuning(`${path}: metadata`, tuning);
  const params = await loadSafetensors(path);
  try {
    return { encoder: TuningEncoder.fromParams(spec, params), info: { classWord: meta.class_word ?? '', baseFingerprint: meta.base_fingerprint ?? '', settings, ...(checkedTuning ? { tuning: checkedTuning } : {}) } };
  } catch (e) {
    for (const t of params.values()) t.dispose();
    if (e instanceof ImprintError) throw new ImprintError(`${path}: ${e.message}`, e.code);
    throw e;
  }
}
