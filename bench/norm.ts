// norm suite: group norm (UNet/VAE) and layer norm (transformers) forward and
// backward (dx, dweight, dbias) on SD shapes, vs PyTorch. Bytes count one read
// of each input and one write of each output of x's size. group-norm-silu is
// the fused inference form the resnets run (one read of x, one write), against
// PyTorch's F.silu(F.group_norm(...)).
import type { Tensor } from '../lib/index.js';
import { groupNorm, groupNormBackward, groupNormSilu, layerNorm, layerNormBackward } from '../lib/nn/norm.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const GROUPS = 32;
const NORMS: { kind: 'group' | 'layer'; x: number[] }[] = [
  { kind: 'group', x: [1, 320, 64, 64] },
  { kind: 'group', x: [2, 640, 32, 32] },
  { kind: 'layer', x: [2, 4096, 320] },
  { kind: 'layer', x: [1, 77, 768] },
];

export function normCases(device: string): BenchCase[] {
  return NORMS.flatMap(({ kind, x: shape }): BenchCase[] => {
    const group = kind === 'group';
    const param = [group ? shape[1] : shape[shape.length - 1]];
    const forward = (x: Tensor<'f32'>, weight: Tensor<'f32'>, bias: Tensor<'f32'>) =>
      group ? groupNorm(x, { groups: GROUPS, weight, bias }) : layerNorm(x, { weight, bias });
    const expr = group ? `F.group_norm(x, ${GROUPS}, w, b)` : `F.layer_norm(x, [${param[0]}], w, b)`;
    const torch = torchPair({ x: shape, w: param, b: param }, expr, ['x', 'w', 'b']);
    const name = `${kind}-norm-${shape.join('x')}`;
    const base = { suite: 'norm', device, params: { x: shape, ...(group ? { groups: GROUPS } : {}), dtype: 'f32' } };
    return [
      {
        ...base,
        name: `${name}-forward`,
        bytes: 8 * numel(shape),
        async prepare() {
          const [x, w, b] = await randnEach(device, shape, param, param);
          return opStep([x, w, b], () => forward(x, w, b));
        },
        torch: torch.forward,
      },
      {
        ...base,
        name: `${name}-backward`,
        bytes: 12 * numel(shape),
        async prepare() {
          const [x, w, b, dy] = await randnEach(device, shape, param, param, shape);
          const { y, ...saved } = await forward(x, w, b);
          y.dispose();
          const backward = () => (group ? groupNormBackward(dy, x, saved, { groups: GROUPS, weight: w }) : layerNormBackward(dy, x, saved, { weight: w }));
          return opStep([x, w, b, dy, saved], backward);
        },
        torch: torch.backward,
      },
      ...(group ? [{
        ...base,
        name: `group-norm-silu-${shape.join('x')}-forward`,
        bytes: 8 * numel(shape),
        async prepare() {
          const [x, w, b] = await randnEach(device, shape, param, param);
          return opStep([x, w, b], () => groupNormSilu(x, { groups: GROUPS, weight: w, bias: b, keepNorm: false }));
        },
        torch: torchPair({ x: shape, w: param, b: param }, `F.silu(${expr})`, ['x', 'w', 'b']).forward,
      }] : []),
    ];
  });
}
