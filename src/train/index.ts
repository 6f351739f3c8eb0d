// Training: the config schema, AdamW, the learning-rate schedule, clipping, checkpoints and the loop.
export * from './config.ts';
export * from './optimizer.ts';
export * from './schedule.ts';
export * from './clip.ts';
export * from './checkpoint.ts';
export * from './trainer.ts';
export * from './interop.ts';
