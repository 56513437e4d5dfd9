// The tuning encoder's file: its parameters as safetensors (f32) with the
// spec, the class word and the base model's fingerprint in the metadata, so
// an encoder is refused for a model it was not pretrained on.
import { ImprintError, invalidArgument } from '../../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../io/safetensors.js';
import type { Tensor } from '../../tensor.js';
import { TuningEncoder, type TuningEncoderSpec } from './model.js';

export interface EncoderFileInfo {
  classWord: string;
  baseFingerprint: string;
  /** Pretraining settings, as recorded. */
  settings: Record<string, string>;
}

/** Writes the encoder (atomically: a temporary file, then a rename). */
export async function saveEncoder(path: string, encoder: TuningEncoder, info: EncoderFileInfo): Promise<void> {
  await saveSafetensors(path, encoder.params as Map<string, Tensor>, {
    format: 'imprint-tuning-encoder', version: '1', spec: JSON.stringify(encoder.spec), class_word: info.classWord,
    base_fingerprint: info.baseFingerprint, settings: JSON.stringify(info.settings),
  });
}

/** Reads an encoder file; errors name the file and what is wrong with it. */
export async function loadEncoder(path: string): Promise<{ encoder: TuningEncoder; info: EncoderFileInfo }> {
  const meta = readSafetensorsHeader(path).metadata;
  if (meta.format !== 'imprint-tuning-encoder') throw invalidArgument(`${path} is not a tuning encoder file (metadata 'format' is ${JSON.stringify(meta.format ?? null)})`);
  if (meta.version !== '1') throw invalidArgument(`${path}: tuning encoder file version ${meta.version} is not supported (this Imprint reads version 1)`);
  let spec: TuningEncoderSpec, settings: Record<string, string>;
  try {
    spec = JSON.parse(meta.spec ?? '') as TuningEncoderSpec;
    settings = JSON.parse(meta.settings ?? '{}') as Record<string, string>;
  } catch (e) {
    throw invalidArgument(`${path}: metadata 'spec' or 'settings' is not valid JSON (${(e as Error).message})`);
  }
  const params = await loadSafetensors(path);
  try {
    return { encoder: TuningEncoder.fromParams(spec, params), info: { classWord: meta.class_word ?? '', baseFingerprint: meta.base_fingerprint ?? '', settings } };
  } catch (e) {
    for (const t of params.values()) t.dispose();
    if (e instanceof ImprintError) throw new ImprintError(`${path}: ${e.message}`, e.code);
    throw e;
  }
}
