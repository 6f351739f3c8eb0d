// The benchmarks' timing helpers: the order in which interleaved rounds run, and the statistics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interleavedTimes, median, medianRatio } from '../src/bench/measure.ts';

test('interleavedTimes alternates the direction of its rounds and gives one time per round', () => {
  const calls: number[] = [];
  const fns = [0, 1, 2].map((i) => () => { calls.push(i); });
  const times = interleavedTimes(fns, { warmup: 1, minRuns: 4, minMs: 0 });
  // warm-up in order, then rounds a b c, c b a, a b c, c b a
  assert.deepEqual(calls, [0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]);
  assert.deepEqual(times.map((t) => t.length), [4, 4, 4]);
  for (const t of times) for (const ms of t) assert.ok(ms >= 0 && Number.isFinite(ms));
});

test('median and medianRatio', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  // rounds' ratios 2, 1.5, 3: their median is 2 (the ratio of the medians would be 6 / 4)
  assert.equal(medianRatio([2, 6, 12], [1, 4, 4]), 2);
  // a slow round for both (the machine busy) leaves the round's ratio alone
  assert.equal(medianRatio([10, 100, 10], [5, 50, 5]), 2);
});
