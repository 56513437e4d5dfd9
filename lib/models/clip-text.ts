// The CLIP text encoder (transformers' CLIPTextModel, the text encoder of
// SD 1.x and 2.x) run as one native graph (csrc/models/clip_text.h): token +
// position embeddings, pre-norm causal transformer layers, final layer norm.
import { ImprintError, invalidArgument } from '../errors.js';
import { concat } from '../nn/concat.js';
import { embedding } from '../nn/embedding.js';
import { runOp } from '../nn/run.js';
import { tensor } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkBoolean, checkInt, checkOptions, describe, type FloatDType } from '../validate.js';
import { parseClipTextConfig, type ClipTextConfig } from './configs.js';
import { growEmbedding } from './grow-embedding.js';
import { clipTextLayout, clipTextWeightNames, TOKEN_EMBEDDING } from './layout-clip.js';
import { describeTensor, takeWeights } from './weights.js';

export interface ClipTextEncodeOptions {
  /** Also return the final layer norm of the last layer's input (SD2's conditioning; default false). */
  penultimate?: boolean;
}

export interface ClipTextOutputs<D extends FloatDType = FloatDType> {
  /** [batch, tokens, hidden_size]: the last layer's output after the final layer norm. */
  lastHiddenState: Tensor<D>;
  /** [batch, tokens, hidden_size]: hidden_states[-2] after the final layer norm, when asked for. */
  penultimate?: Tensor<D>;
}

// As the native errors describe tensors: "f32[2, 77] on cpu".
const desc = describeTensor;

export class ClipTextEncoder<D extends FloatDType = FloatDType> {
  readonly config: ClipTextConfig;
  /** The weights in the native op's input order, and their names. */
  readonly #weights: Tensor<D>[];
  readonly #names: string[];

  private constructor(config: ClipTextConfig, weights: Tensor<D>[], names: string[]) {
    this.config = config;
    this.#weights = weights;
    this.#names = names;
  }

  /**
   * An encoder over `weights` named as transformers' CLIPTextModel state dict
   * (text_model.embeddings.token_embedding.weight, ...), e.g. from
   * loadSafetensors(text_encoder/model.safetensors). Every weight is checked
   * against `config` for name, shape, dtype and device; other entries are
   * ignored (older checkpoints carry text_model.embeddings.position_ids).
   * The tensors are used, not copied: keep them undisposed while encoding.
   */
  static fromWeights(config: unknown, weights: Map<string, Tensor>): ClipTextEncoder {
    const fn = 'ClipTextEncoder.fromWeights';
    const c = parseClipTextConfig(config, fn);
    const layout = clipTextLayout(c);
    const names = clipTextWeightNames(c);
    const list = takeWeights(fn, weights, names, layout, 'the token embedding');
    return new ClipTextEncoder(c, list, names);
  }

  /**
   * An encoder with one more token-embedding row per entry of `sources`
   * (for tokens added to the tokenizer; their ids continue vocab_size): a
   * copy of row `sources[i]`, or the mean of all rows when it is undefined.
   * The other weights are shared with this encoder; the new table
   * (`tokenEmbedding`) belongs to the caller, who disposes it.
   */
  async addTokenRows(sources: ReadonlyArray<number | undefined>): Promise<ClipTextEncoder<D>> {
    const fn = 'ClipTextEncoder.addTokenRows';
    if (!Array.isArray(sources) || sources.length === 0) throw invalidArgument(`${fn}: sources must be a non-empty array of token ids or undefined, got ${describe(sources)}`);
    const at = this.#names.indexOf(TOKEN_EMBEDDING);
    const table = this.#weights[at];
    if (table.disposed) throw new ImprintError(`${fn}: weight '${TOKEN_EMBEDDING}' has been disposed`, 'DISPOSED');
    const grown = await growEmbedding(fn, table, sources);
    return this.#withTable(fn, grown);
  }

  /**
   * An encoder whose token embedding has `rows` [n, hidden_size] appended
   * (given rows for added tokens, e.g. a concept's learned embeddings; cast
   * to the table's dtype and device). As with addTokenRows, the other weights
   * are shared and the new table belongs to the caller.
   */
  async withTokenRows(rows: Tensor): Promise<ClipTextEncoder<D>> {
    const fn = 'ClipTextEncoder.withTokenRows';
    const H = this.config.hiddenSize;
    if (!(rows instanceof Tensor)) throw invalidArgument(`${fn}: rows must be a tensor [n, ${H}], got ${describe(rows)}`);
    if (rows.disposed) throw new ImprintError(`${fn}: rows has been disposed`, 'DISPOSED');
    if (rows.ndim !== 2 || rows.shape[0] < 1 || rows.shape[1] !== H) throw new ImprintError(`${fn}: rows must be [n ≥ 1, hidden_size ${H}], got [${rows.shape.join(', ')}]`, 'SHAPE_MISMATCH');
    if (rows.dtype !== 'f32' && rows.dtype !== 'f16' && rows.dtype !== 'bf16') throw new ImprintError(`${fn}: rows must be a float tensor, got ${rows.dtype}`, 'DTYPE_MISMATCH');
    const table = this.tokenEmbedding;
    if (table.disposed) throw new ImprintError(`${fn}: weight '${TOKEN_EMBEDDING}' has been disposed`, 'DISPOSED');
    const temps: Tensor[] = [];
    try {
      let r: Tensor = rows;
      if (r.dtype !== table.dtype) temps.push((r = await r.cast(table.dtype)));
      if (r.device !== table.device) temps.push((r = await r.to(table.device)));
      return this.#withTable(fn, await concat([table, r as Tensor<D>]));
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  /**
   * An encoder whose token embedding lacks its last `n` rows (copied bit for
   * bit: undoing withTokenRows). The new table belongs to the caller.
   */
  async withoutLastTokenRows(n: number): Promise<ClipTextEncoder<D>> {
    const fn = 'ClipTextEncoder.withoutLastTokenRows';
    const V = this.config.vocabSize;
    checkInt(fn, 'n', n, 1, V - 1);
    const table = this.tokenEmbedding;
    if (table.disposed) throw new ImprintError(`${fn}: weight '${TOKEN_EMBEDDING}' has been disposed`, 'DISPOSED');
    let ids = tensor(Int32Array.from({ length: V - n }, (_, i) => i), { shape: [V - n] });
    try {
      if (table.device !== 'cpu') {
        const moved = await ids.to(table.device);
        ids.dispose();
        ids = moved;
      }
      return this.#withTable(fn, await embedding(ids, table));
    } finally {
      ids.dispose();
    }
  }

  /** This encoder with another token table (more rows), the config's vocab_size to match. */
  #withTable(fn: string, table: Tensor<D>): ClipTextEncoder<D> {
    const c = this.config;
    // Re-parsed from config.json names, so the result is a parsed config like any other.
    const config = parseClipTextConfig({
      vocab_size: table.shape[0], hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
      num_hidden_layers: c.numHiddenLayers, num_attention_heads: c.numAttentionHeads,
      max_position_embeddings: c.maxPositionEmbeddings, hidden_act: c.hiddenAct, layer_norm_eps: c.layerNormEps,
    }, fn);
    const weights = this.#weights.slice();
    weights[this.#names.indexOf(TOKEN_EMBEDDING)] = table;
    return new ClipTextEncoder(config, weights, this.#names);
  }

  /** text_model.embeddings.token_embedding.weight, [vocab_size, hidden_size]. */
  get tokenEmbedding(): Tensor<D> {
    return this.#weights[this.#names.indexOf(TOKEN_EMBEDDING)];
  }

  /** The weights' dtype and device. */
  get dtype(): D {
    return this.#weights[0].dtype;
  }

  get device(): string {
    return this.#weights[0].device;
  }

  /**
   * Encodes token ids, [batch, tokens] with tokens ≤ max_position_embeddings,
   * as an i32/i64 tensor on the weights' device or as nested arrays of
   * integers (e.g. a tokenizer's output, usually padded to 77).
   */
  async encode(inputIds: Tensor | number[][], options?: ClipTextEncodeOptions): Promise<ClipTextOutputs<D>> {
    const fn = 'ClipTextEncoder.encode';
    const o = checkOptions(fn, options, ['penultimate']);
    const penultimate = checkBoolean(fn, 'penultimate', o.penultimate, false);
    const c = this.config;
    // The weights are shared with the caller's Map, so one may have been disposed since.
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    let ids: Tensor;
    let owned = false;
    if (inputIds instanceof Tensor) {
      if (inputIds.dtype !== 'i32' && inputIds.dtype !== 'i64') {
        throw new ImprintError(`${fn}: inputIds must be an i32 or i64 tensor, got ${desc(inputIds)}`, 'DTYPE_MISMATCH');
      }
      if (inputIds.ndim !== 2) throw new ImprintError(`${fn}: inputIds must be [batch, tokens], got ${desc(inputIds)}`, 'SHAPE_MISMATCH');
      this.#checkTokens(fn, inputIds.shape[1]);
      ids = inputIds;  // values are checked natively against vocab_size
    } else {
      ids = tensor(this.#idsFromArrays(fn, inputIds), { shape: [inputIds.length, inputIds[0].length] });
      owned = true;
      if (this.device !== 'cpu') {
        const moved = await ids.to(this.device);
        ids.dispose();
        ids = moved;
      }
    }
    try {
      const outs = await runOp<D>('clip_text_forward', [ids, ...this.#weights], {
        layers: c.numHiddenLayers, heads: c.numAttentionHeads, eps: c.layerNormEps,
        quickGelu: c.hiddenAct === 'quick_gelu', penultimate,
      });
      return penultimate ? { lastHiddenState: outs[0], penultimate: outs[1] } : { lastHiddenState: outs[0] };
    } finally {
      if (owned) ids.dispose();
    }
  }

  #checkTokens(fn: string, tokens: number): void {
    if (tokens < 1) throw new ImprintError(`${fn}: inputIds must hold at least one token per row`, 'SHAPE_MISMATCH');
    if (tokens > this.config.maxPositionEmbeddings) {
      throw new ImprintError(`${fn}: inputIds have ${tokens} tokens but max_position_embeddings is ${this.config.maxPositionEmbeddings}`, 'SHAPE_MISMATCH');
    }
  }

  #idsFromArrays(fn: string, rows: unknown): Int32Array {
    if (!Array.isArray(rows) || rows.length === 0) {
      throw invalidArgument(`${fn}: inputIds must be an i32/i64 tensor or a non-empty array of rows of token ids, got ${describe(rows)}`);
    }
    const first = rows[0];
    if (!Array.isArray(first)) throw invalidArgument(`${fn}: inputIds[0] must be an array of token ids, got ${describe(first)}`);
    const T = first.length;
    this.#checkTokens(fn, T);
    const vocab = this.config.vocabSize;
    const out = new Int32Array(rows.length * T);
    rows.forEach((row: unknown, b) => {
      if (!Array.isArray(row) || row.length !== T) {
        throw new ImprintError(`${fn}: inputIds[${b}] must be an array of ${T} token ids (as inputIds[0]), got ${describe(row)}`, 'SHAPE_MISMATCH');
      }
      row.forEach((id: unknown, t) => {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab) {
          throw invalidArgument(`${fn}: inputIds[${b}][${t}] = ${describe(id)} is not a token id for vocab_size ${vocab} (expected an integer 0 to ${vocab - 1})`);
        }
        out[b * T + t] = id;
      });
    });
    return out;
  }
}
