// Checkpoints, by part: checking a header against a layout (checkpoint-layout.ts),
// loading diffusers folders (checkpoint-diffusers.ts) and single-file LDM
// checkpoints (checkpoint-single-file.ts), and what the loaders share
// (checkpoint-files.ts). This module gathers them under one name.
export { checkAgainstLayout, diffAgainstLayout, type CheckOptions, type HeaderLike, type LayoutDiff } from './checkpoint-layout.js';
export type { LoadedComponent } from './checkpoint-files.js';
export { loadDiffusersComponent, loadDiffusersModel, type ComponentKind, type LoadedDiffusersModel, type LoadOptions } from './checkpoint-diffusers.js';
export { loadSingleFileCheckpoint, type LoadedSingleFile, type SingleFileOptions } from './checkpoint-single-file.js';
