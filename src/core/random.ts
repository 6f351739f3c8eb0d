// Deterministic randomness. Counter-based hashing (the value at index i depends only on seed and
// i) makes dropout identical on every backend and thread count; the generator is a small,
// serialisable PRNG so checkpoints can store and restore its state exactly.

/** 32-bit avalanche hash of (seed, index): murmur3's finaliser over a Weyl step. */
export function hash32(seed: number, index: number): number {
  let h = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(index | 0, 0x85ebca77)) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Dropout's keep test, shared by every backend's dropoutMask kernel. */
export function dropoutKeeps(seed: number, index: number, p: number): boolean {
  return hash32(seed, index) >= p * 4294967296;
}

/** mulberry32 generator; `state` is a plain number so it round-trips through JSON. */
export class Rng {
  state: number;
  constructor(seed: number) { this.state = seed >>> 0; }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }
  /** Standard normal (Box–Muller; one value per call keeps the state a single number). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}
