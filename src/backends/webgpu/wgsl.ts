// WGSL building blocks shared by the webgpu kernels: the 1-D launch index, element types, and the
// safe forms of functions whose WGSL built-ins misbehave at the extremes.
import type { DType } from '../../core/dtype.ts';

/** Threads per workgroup of the elementwise kernels. */
export const WG = 256;

/** The WGSL scalar type of a storage dtype (float32 → f32, int32 → i32). */
export function wgslType(dtype: DType): 'f32' | 'i32' {
  if (dtype === 'float64') throw new Error('webgpu: float64 has no WGSL type');
  return dtype === 'int32' ? 'i32' : 'f32';
}

/**
 * The flat thread index of a grid1d() launch: `let i = linearIndex(gid, nwg);` in a kernel whose
 * entry point takes @builtin(global_invocation_id) gid and @builtin(num_workgroups) nwg.
 */
export const LINEAR_INDEX = /* wgsl */ `
fn linearIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * ${WG}u; }`;

/** The entry point header of an elementwise kernel over `count` threads (i is the thread's index). */
export function elementwiseMain(body: string): string {
  return /* wgsl */ `${LINEAR_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
${body}
}`;
}

/**
 * Scalar functions with IEEE-style behaviour at the extremes (WGSL's tanh, exp-based sigmoid and
 * pow differ between drivers for large or special inputs), and erf for the exact GELU.
 */
export const MATH = /* wgsl */ `
fn safeSigmoid(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
fn safeTanh(x: f32) -> f32 {
  if (abs(x) > 15.0) { return sign(x); }
  if (abs(x) < 0.0005) { return x * (1.0 - x * x / 3.0); }
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
// erf: Abramowitz–Stegun 7.1.26 is too coarse (1.5e-7 absolute, but 1e-4 relative near 0), so a
// Taylor series near 0 and erfc's continued fraction in the tails, like the reference.
fn erf32(x: f32) -> f32 {
  let ax = abs(x);
  var r: f32;
  if (ax < 2.0) {
    let x2 = ax * ax;
    var term = ax;
    var sum = ax;
    for (var n = 1; n < 40; n++) {
      term *= -x2 / f32(n);
      sum += term / f32(2 * n + 1);
    }
    r = 1.1283791670955126 * sum;
  } else if (ax > 6.0) {
    r = 1.0;
  } else {
    var f = ax;
    for (var n = 40; n >= 1; n--) { f = ax + (f32(n) * 0.5) / f; }
    r = 1.0 - exp(-ax * ax) * 0.5641895835477563 / f;
  }
  return select(r, -r, x < 0.0);
}
fn gelu32(x: f32) -> f32 { return 0.5 * x * (1.0 + erf32(x * 0.7071067811865476)); }
fn geluGrad32(x: f32) -> f32 {
  return 0.5 * (1.0 + erf32(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
// pow as JavaScript's Math.pow for the cases models meet: negative bases with integer exponents,
// zero bases, and an exponent of 0 (1 even for NaN bases).
// Infinity and NaN come from bits held in a var: a constant expression may not evaluate to either.
fn f32Inf() -> f32 { var bits = 0x7f800000u; return bitcast<f32>(bits); }
fn f32Nan() -> f32 { var bits = 0x7fc00000u; return bitcast<f32>(bits); }
fn powJs(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a == 0.0) { return select(0.0, f32Inf(), b < 0.0); }
  if (a < 0.0) {
    if (b != floor(b)) { return f32Nan(); }
    let m = pow(-a, b);
    return select(m, -m, (i32(b) & 1) == 1);
  }
  return pow(a, b);
}
fn isNan32(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn isFinite32(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
`;
