// act suite: SiLU, GELU, quick-GELU, GEGLU, softmax and scale, forward and
// backward on SD sizes, vs PyTorch. PyTorch's quick-GELU and GEGLU are the
// compositions CLIP and diffusers use. Bytes: one read of each input, one
// write of the output.
import type { Tensor } from '../lib/index.js';
import * as act from '../lib/nn/act.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

type Op = (x: Tensor<'f32'>) => Promise<Tensor<'f32'>>;
type Backward = (dy: Tensor<'f32'>, saved: Tensor<'f32'>) => Promise<Tensor<'f32'>>;

interface Act {
  name: string;
  x: number[];
  /** Output shape (default x's). */
  y?: number[];
  forward: Op;
  /** Takes dy and x, or the forward's output for softmax (`savesOutput`). */
  backward?: Backward;
  savesOutput?: boolean;
  torch: string;
  /** Python definitions the torch expression uses. */
  prelude?: string;
}

const UNET_ACT = [2, 320, 64, 64];
const GEGLU_IN = [2, 4096, 2560];
const GEGLU_OUT = [2, 4096, 1280];
const CROSS_SCORES = [16, 4096, 77];
const SELF_SCORES = [8, 1024, 1024];
const GEGLU_PY = 'def geglu(x):\n    value, gate = x.chunk(2, dim=-1)\n    return value * F.gelu(gate)';

const softmax = (name: string, x: number[]): Act =>
  ({ name, x, forward: (t) => act.softmax(t), backward: (dy, y) => act.softmaxBackward(dy, y), savesOutput: true, torch: 'torch.softmax(x, -1)' });

const ACTS: Act[] = [
  { name: 'silu', x: UNET_ACT, forward: act.silu, backward: act.siluBackward, torch: 'F.silu(x)' },
  { name: 'gelu', x: UNET_ACT, forward: act.gelu, backward: act.geluBackward, torch: 'F.gelu(x)' },
  { name: 'quick-gelu', x: UNET_ACT, forward: act.quickGelu, backward: act.quickGeluBackward, torch: 'x * torch.sigmoid(1.702 * x)' },
  { name: 'geglu', x: GEGLU_IN, y: GEGLU_OUT, forward: act.geglu, backward: act.gegluBackward, torch: 'geglu(x)', prelude: GEGLU_PY },
  softmax('softmax-cross', CROSS_SCORES),
  softmax('softmax-self', SELF_SCORES),
  { name: 'scale', x: UNET_ACT, forward: (x) => act.scale(x, 0.125), torch: 'x * 0.125' },
];

export function actCases(device: string): BenchCase[] {
  return ACTS.flatMap((a): BenchCase[] => {
    const y = a.y ?? a.x;
    const torch = torchPair({ x: a.x }, a.torch, ['x'], a.prelude);
    const base = { suite: 'act', device, params: { x: a.x, dtype: 'f32' } };
    const cases: BenchCase[] = [
      {
        ...base,
        name: `${a.name}-forward`,
        bytes: 4 * (numel(a.x) + numel(y)),
        async prepare() {
          const [x] = await randnEach(device, a.x);
          return opStep(x, () => a.forward(x));
        },
        torch: torch.forward,
      },
    ];
    const backward = a.backward;
    if (backward) {
      cases.push({
        ...base,
        name: `${a.name}-backward`,
        bytes: 4 * (numel(y) + numel(a.savesOutput ? y : a.x) + numel(a.x)),
        async prepare() {
          const [x, dy] = await randnEach(device, a.x, y);
          const saved = a.savesOutput ? await a.forward(x) : x;
          return opStep([x, dy, saved], () => backward(dy, saved));
        },
        torch: torch.backward,
      });
    }
    return cases;
  });
}
