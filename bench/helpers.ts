// Helpers the nn case files share: seeded inputs, freeing op results, and the
// PyTorch snippets for a forward and its autograd backward.
import { randn, Tensor } from '../lib/index.js';

export interface TorchSnippet {
  setup: string;
  run: string;
}

/** Number of elements of a shape. */
export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** f32 normal inputs of the given shapes on a device, seeded 1, 2, ... in order. */
export const randnEach = (device: string, ...shapes: (readonly number[])[]): Promise<Tensor<'f32'>[]> =>
  Promise.all(shapes.map((shape, i) => randn(shape, { seed: i + 1, device })));

/** Frees every tensor in a value: a tensor, or arrays and objects holding them. */
export function disposeAll(value: unknown): void {
  if (value instanceof Tensor) value.dispose();
  else if (Array.isArray(value)) value.forEach(disposeAll);
  else if (value && typeof value === 'object') Object.values(value).forEach(disposeAll);
}

/** prepare()'s result for an op: the step runs it and frees what it returns; dispose frees `inputs`. */
export const opStep = (inputs: unknown, op: () => Promise<unknown>): { step: () => Promise<void>; dispose: () => void } => ({
  step: async () => disposeAll(await op()),
  dispose: () => disposeAll(inputs),
});

/** Peer setup lines `name = torch.randn(shape, device=device)`; names in `grad` get requires_grad=True. */
export const torchRandn = (inputs: Record<string, readonly number[]>, grad: readonly string[] = []): string =>
  Object.entries(inputs)
    .map(([name, shape]) => `${name} = torch.randn(${JSON.stringify(shape)}, device=device${grad.includes(name) ? ', requires_grad=True' : ''})`)
    .join('\n');

/**
 * PyTorch snippets for `expr` over randn `inputs` (after the `prelude` lines):
 * forward times expr; backward builds y = expr in setup, with requires_grad on
 * the `grad` inputs, and times torch.autograd.grad(y, grad, dy, retain_graph=True).
 */
export function torchPair(inputs: Record<string, readonly number[]>, expr: string, grad: readonly string[], prelude = ''): { forward: TorchSnippet; backward: TorchSnippet } {
  const lines = (...l: string[]) => l.filter(Boolean).join('\n');
  return {
    forward: { setup: lines(prelude, torchRandn(inputs)), run: expr },
    backward: {
      setup: lines(prelude, torchRandn(inputs, grad), `y = ${expr}`, 'dy = torch.randn_like(y)'),
      run: `torch.autograd.grad(y, [${grad.join(', ')}], dy, retain_graph=True)`,
    },
  };
}
