// The learning-rate schedule (nanoGPT's): a linear warm-up to the peak, then a cosine decay to a
// floor, then the floor. Step numbers count from 0 (the first update uses lr(0)).
import type { TrainConfig } from './config.ts';

/**
 * A learning-rate schedule: linear warm-up to `lr`, cosine decay to `minLr`, then `minLr`. {@link
 * scheduleOf} makes one from a training config; {@link learningRate} evaluates it.
 */
export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Floor of the decay. */
  minLr: number;
  /** Steps of linear warm-up: step s < warmupSteps uses lr · (s + 1) / warmupSteps. */
  warmupSteps: number;
  /** The step at which the cosine reaches minLr. */
  decaySteps: number;
}

/** The schedule a config describes: minLr defaults to lr / 10 and decaySteps to the run's steps. */
export function scheduleOf(c: Pick<TrainConfig, 'lr' | 'minLr' | 'warmupSteps' | 'lrDecaySteps' | 'steps'>): LrSchedule {
  return { lr: c.lr, minLr: c.minLr ?? c.lr / 10, warmupSteps: c.warmupSteps, decaySteps: c.lrDecaySteps ?? c.steps };
}

/** The learning rate of step `step` (0-based). */
export function learningRate(step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (step >= s.decaySteps) return s.minLr;
  const span = s.decaySteps - s.warmupSteps;
  const ratio = span > 0 ? (step - s.warmupSteps) / span : 1;
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio)); // 1 → 0
  return s.minLr + coeff * (s.lr - s.minLr);
}
