// Small-sample statistics for experiment reports: means with Student-t confidence intervals (over
// seeds), paired differences, Welch's unpaired interval, and a least-squares slope with its
// interval. Everything in float64 on plain arrays; no dependencies.

/** A mean with its two-sided confidence interval. lo/hi are null when n < 2 (no spread to use). */
export interface Interval {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1 denominator); null when n < 2. */
  sd: number | null;
  /** Degrees of freedom of the t quantile used; null when n < 2. */
  df: number | null;
  level: number;
  lo: number | null;
  hi: number | null;
  /** (hi − lo) / 2; null when n < 2. */
  halfWidth: number | null;
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('mean: no values');
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample variance (n − 1 denominator). */
export function variance(xs: readonly number[]): number {
  if (xs.length < 2) throw new Error(`variance: needs at least 2 values, got ${xs.length}`);
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return s / (xs.length - 1);
}

// ---- Student's t distribution ----

/** log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (Numerical Recipes' betacf, modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d; h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1)) throw new Error(`incompleteBeta: x must lie in [0, 1], got ${x}`);
  if (x === 0 || x === 1) return x;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** P(T ≤ t) for Student's t with df degrees of freedom (df > 0, not necessarily an integer). */
export function tCdf(t: number, df: number): number {
  if (!(df > 0)) throw new Error(`tCdf: df must be positive, got ${df}`);
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5); // P(T > |t|)
  return t >= 0 ? 1 - tail : tail;
}

/** The p-quantile of Student's t with df degrees of freedom (bisection on tCdf, to ~1e-12). */
export function tQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`tQuantile: p must lie in (0, 1), got ${p}`);
  if (!(df > 0)) throw new Error(`tQuantile: df must be positive, got ${df}`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -tQuantile(1 - p, df);
  let lo = 0, hi = 1;
  while (tCdf(hi, df) < p) { lo = hi; hi *= 2; if (hi > 1e12) return Infinity; }
  for (let i = 0; i < 200 && hi - lo > 1e-13 * Math.max(1, hi); i++) {
    const mid = 0.5 * (lo + hi);
    if (tCdf(mid, df) < p) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/** Two-sided p-value of a t statistic. */
export function tTestP(t: number, df: number): number {
  return 2 * (1 - tCdf(Math.abs(t), df));
}

// ---- intervals ----

function checkLevel(level: number): void {
  if (!(level > 0 && level < 1)) throw new Error(`confidence level must lie in (0, 1), got ${level}`);
}

/** The mean of xs with a t interval: mean ± t_{(1+level)/2, n−1} · sd / √n. */
export function meanInterval(xs: readonly number[], level = 0.95): Interval {
  checkLevel(level);
  const finite = xs.every((x) => Number.isFinite(x));
  if (!finite) throw new Error('meanInterval: every value must be finite (drop diverged runs first and say so)');
  const n = xs.length;
  const m = mean(xs);
  if (n < 2) return { n, mean: m, sd: null, df: null, level, lo: null, hi: null, halfWidth: null };
  const sd = Math.sqrt(variance(xs));
  const df = n - 1;
  const hw = (tQuantile((1 + level) / 2, df) * sd) / Math.sqrt(n);
  return { n, mean: m, sd, df, level, lo: m - hw, hi: m + hw, halfWidth: hw };
}

/** The mean of a_i − b_i (pairs matched by index, e.g. by seed) with its t interval. */
export function pairedInterval(a: readonly number[], b: readonly number[], level = 0.95): Interval {
  if (a.length !== b.length) throw new Error(`pairedInterval: ${a.length} and ${b.length} values cannot be paired`);
  return meanInterval(a.map((x, i) => x - b[i]), level);
}

/**
 * mean(a) − mean(b) for independent samples with Welch's interval (unequal variances,
 * Welch–Satterthwaite degrees of freedom). Needs at least 2 values in each.
 */
export function welchInterval(a: readonly number[], b: readonly number[], level = 0.95): Interval {
  checkLevel(level);
  const m = mean(a) - mean(b);
  if (a.length < 2 || b.length < 2) return { n: a.length + b.length, mean: m, sd: null, df: null, level, lo: null, hi: null, halfWidth: null };
  const va = variance(a) / a.length, vb = variance(b) / b.length;
  const se = Math.sqrt(va + vb);
  const df = se === 0 ? a.length + b.length - 2 : (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  const hw = tQuantile((1 + level) / 2, df) * se;
  return { n: a.length + b.length, mean: m, sd: se, df, level, lo: m - hw, hi: m + hw, halfWidth: hw };
}

export interface LinearFit {
  n: number;
  slope: number;
  intercept: number;
  /** Standard error of the slope and its t interval (n − 2 df); null when n < 3. */
  slopeSe: number | null;
  slopeLo: number | null;
  slopeHi: number | null;
  level: number;
}

/** Ordinary least squares y = intercept + slope · x, with a t interval for the slope. */
export function linearFit(x: readonly number[], y: readonly number[], level = 0.95): LinearFit {
  checkLevel(level);
  const n = x.length;
  if (n !== y.length) throw new Error(`linearFit: ${n} x values but ${y.length} y values`);
  if (n < 2) throw new Error(`linearFit: needs at least 2 points, got ${n}`);
  const mx = mean(x), my = mean(y);
  let sxx = 0, sxy = 0;
  for (let i = 0; i < n; i++) { sxx += (x[i] - mx) ** 2; sxy += (x[i] - mx) * (y[i] - my); }
  if (sxx === 0) throw new Error('linearFit: every x is the same; the slope is undefined');
  const slope = sxy / sxx, intercept = my - slope * mx;
  if (n < 3) return { n, slope, intercept, slopeSe: null, slopeLo: null, slopeHi: null, level };
  let rss = 0;
  for (let i = 0; i < n; i++) rss += (y[i] - intercept - slope * x[i]) ** 2;
  const se = Math.sqrt(rss / (n - 2) / sxx);
  const hw = tQuantile((1 + level) / 2, n - 2) * se;
  return { n, slope, intercept, slopeSe: se, slopeLo: slope - hw, slopeHi: slope + hw, level };
}

/** Where an interval lies relative to zero: 'above', 'below', or 'spans' (also when it is unknown). */
export function signOf(lo: number | null, hi: number | null): 'above' | 'below' | 'spans' {
  if (lo === null || hi === null) return 'spans';
  if (lo > 0) return 'above';
  if (hi < 0) return 'below';
  return 'spans';
}
