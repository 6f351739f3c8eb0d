// The benchmarks' timing helpers: the order in which interleaved rounds run, and the statistics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interleavedTimes, median, medianMs, medianRatio } from '../src/bench/measure.ts';

test('interleavedTimes alternates the direction of its rounds and gives one time per round', async () => {
  const calls: number[] = [];
  const fns = [0, 1, 2].map((i) => () => { calls.push(i); });
  const times = await interleavedTimes(fns, { warmup: 1, minRuns: 4, minMs: 0 });
  // warm-up in order, then rounds a b c, c b a, a b c, c b a
  assert.deepEqual(calls, [0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]);
  assert.deepEqual(times.map((t) => t.length), [4, 4, 4]);
  for (const t of times) for (const ms of t) assert.ok(ms >= 0 && Number.isFinite(ms));
});

test('a timed call ends when settle() resolves (a GPU backend finishes its recorded kernels then)', async () => {
  // The call itself returns at once; the work it "recorded" finishes 30 ms later, as on a GPU.
  let pending: Promise<void> = Promise.resolve();
  const call = (): void => { pending = new Promise((r) => setTimeout(r, 30)); };
  const settle = (): Promise<void> => pending;
  assert.ok(await medianMs(call, { warmup: 0, minRuns: 3, minMs: 0, settle }) >= 25);
  assert.ok(await medianMs(call, { warmup: 0, minRuns: 3, minMs: 0 }) < 25);
  const [withSettle] = await interleavedTimes([call], { warmup: 0, minRuns: 3, minMs: 0, settle });
  for (const ms of withSettle) assert.ok(ms >= 25, `${ms} ms`);
});

test('median and medianRatio', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  // rounds' ratios 2, 1.5, 3: their median is 2 (the ratio of the medians would be 6 / 4)
  assert.equal(medianRatio([2, 6, 12], [1, 4, 4]), 2);
  // a slow round for both (the machine busy) leaves the round's ratio alone
  assert.equal(medianRatio([10, 100, 10], [5, 50, 5]), 2);
});
