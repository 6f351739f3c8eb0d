// Elementwise ops and their gradients. Binary ops broadcast like NumPy; a number operand becomes
// a one-element tensor of the other operand's dtype.
import type { BinaryOp, UnaryOp } from '../core/backend.ts';
import { broadcastShapes, broadcastStrides } from '../core/shape.ts';
import { empty, record, tensorFrom, type Tensor } from '../core/tensor.ts';
import { backendOf, broadcastPair, requireFloat, resultDType, sumToShape } from './util.ts';

/** An operand of a binary op: a tensor, or a number (a one-element tensor of the other operand's dtype). */
export type Operand = Tensor | number;

function unaryOp(op: UnaryOp, x: Tensor, scalar = 0): Tensor {
  const b = backendOf(op, x);
  requireFloat(op, 'x', x);
  const y = empty(x.shape, x.dtype, b);
  b.unary(op, x.storage, y.storage, x.size, scalar);
  return record(y, op, [x], [x, y], (g) => {
    const dx = empty(x.shape, x.dtype, b);
    b.unaryBackward(op, x.storage, y.storage, g.storage, dx.storage, x.size, scalar);
    return [dx];
  });
}

/** −x, elementwise. */
export const neg = (x: Tensor): Tensor => unaryOp('neg', x);
/** |x|, elementwise. */
export const abs = (x: Tensor): Tensor => unaryOp('abs', x);
/** eˣ, elementwise. */
export const exp = (x: Tensor): Tensor => unaryOp('exp', x);
/** The natural logarithm, elementwise. */
export const log = (x: Tensor): Tensor => unaryOp('log', x);
/** √x, elementwise. */
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', x);
/** 1/√x, elementwise. */
export const rsqrt = (x: Tensor): Tensor => unaryOp('rsqrt', x);
/** tanh x, elementwise. */
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', x);
/** 1/(1 + e⁻ˣ), elementwise. */
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', x);
/** x·sigmoid(x) (SiLU / swish), elementwise. */
export const silu = (x: Tensor): Tensor => unaryOp('silu', x);
/** GELU with the exact normal CDF. */
export const gelu = (x: Tensor): Tensor => unaryOp('gelu', x);
/** max(x, 0), elementwise. */
export const relu = (x: Tensor): Tensor => unaryOp('relu', x);
/** x², elementwise. */
export const square = (x: Tensor): Tensor => unaryOp('square', x);
/** 1/x, elementwise. */
export const reciprocal = (x: Tensor): Tensor => unaryOp('reciprocal', x);
/** The sign of x (−1, 0 or 1), elementwise; its gradient is 0. */
export const sign = (x: Tensor): Tensor => unaryOp('sign', x);

/** x ** p: a number exponent uses the unary kernel; a tensor exponent the binary one. */
export function pow(x: Tensor, p: Operand): Tensor {
  return typeof p === 'number' ? unaryOp('pow', x, p) : binaryOp('pow', x, p);
}

function asTensor(v: Operand, like: Tensor): Tensor {
  return typeof v === 'number' ? tensorFrom([v], [], like.dtype === 'int32' ? 'float32' : like.dtype, like.backend) : v;
}

/** Frees the one-element tensors made for number operands (a recorded node keeps their storage). */
function disposeMade(made: Tensor, given: Operand): void {
  if (made !== given) made.dispose();
}

function binaryOp(op: BinaryOp, a0: Operand, b0: Operand): Tensor {
  if (typeof a0 === 'number' && typeof b0 === 'number') throw new Error(`${op}: at least one operand must be a tensor`);
  const a = typeof a0 === 'number' ? asTensor(a0, b0 as Tensor) : a0;
  const b = typeof b0 === 'number' ? asTensor(b0, a) : b0;
  try {
    const be = backendOf(op, a, b);
    const shape = broadcastPair(op, a, b);
    const dtype = resultDType(op, a, b);
    const out = empty(shape, dtype, be);
    be.binary(op, a.storage, broadcastStrides(a.shape, shape), b.storage, broadcastStrides(b.shape, shape), out.storage, shape);
    if (op === 'gt' || op === 'ge' || op === 'lt' || op === 'le' || op === 'eq' || op === 'ne') return out;
    return record(out, op, [a, b], [a, b], (g) => {
      const ga = a.requiresGrad ? binaryGradA(op, g, a, b) : null;
      const gb = b.requiresGrad ? binaryGradB(op, g, a, b) : null;
      return [ga && reduceTo(ga, a, g), gb && reduceTo(gb, b, g)];
    });
  } finally {
    disposeMade(a, a0); disposeMade(b, b0);
  }
}

function reduceTo(gx: Tensor, x: Tensor, g: Tensor): Tensor {
  const r = sumToShape(gx, x.shape);
  if (r !== gx && gx !== g) gx.dispose();
  return r;
}

// Gradient formulas, in terms of ops (they run with grad mode off during backward).
function binaryGradA(op: BinaryOp, g: Tensor, a: Tensor, b: Tensor): Tensor {
  switch (op) {
    case 'add': case 'sub': return g;
    case 'mul': return mul(g, b);
    case 'div': return div(g, b);
    case 'maximum': return mul(g, ge(a, b));
    case 'minimum': return mul(g, le(a, b));
    case 'pow': return mul(g, mul(b, binaryOp('pow', a, sub(b, 1))));
    default: throw new Error(`no gradient for ${op}`);
  }
}

function binaryGradB(op: BinaryOp, g: Tensor, a: Tensor, b: Tensor): Tensor {
  switch (op) {
    case 'add': return g;
    case 'sub': return neg(g);
    case 'mul': return mul(g, a);
    case 'div': return neg(div(mul(g, a), mul(b, b)));
    case 'maximum': return mul(g, lt(a, b));
    case 'minimum': return mul(g, gt(a, b));
    case 'pow': return mul(g, mul(binaryOp('pow', a, b), log(a)));
    default: throw new Error(`no gradient for ${op}`);
  }
}

/** a + b, broadcasting like NumPy. */
export const add = (a: Operand, b: Operand): Tensor => binaryOp('add', a, b);
/** a − b, broadcasting like NumPy. */
export const sub = (a: Operand, b: Operand): Tensor => binaryOp('sub', a, b);
/** a · b, broadcasting like NumPy. */
export const mul = (a: Operand, b: Operand): Tensor => binaryOp('mul', a, b);
/** a / b, broadcasting like NumPy. */
export const div = (a: Operand, b: Operand): Tensor => binaryOp('div', a, b);
/** The larger of a and b, broadcasting like NumPy. */
export const maximum = (a: Operand, b: Operand): Tensor => binaryOp('maximum', a, b);
/** The smaller of a and b, broadcasting like NumPy. */
export const minimum = (a: Operand, b: Operand): Tensor => binaryOp('minimum', a, b);
/** Comparisons give 1/0 in the operands' float dtype and carry no gradient. */
export const gt = (a: Operand, b: Operand): Tensor => binaryOp('gt', a, b);
/** a ≥ b as 1 or 0 (no gradient), broadcasting. */
export const ge = (a: Operand, b: Operand): Tensor => binaryOp('ge', a, b);
/** a < b as 1 or 0 (no gradient), broadcasting. */
export const lt = (a: Operand, b: Operand): Tensor => binaryOp('lt', a, b);
/** a ≤ b as 1 or 0 (no gradient), broadcasting. */
export const le = (a: Operand, b: Operand): Tensor => binaryOp('le', a, b);
/** a = b as 1 or 0 (no gradient), broadcasting. */
export const eq = (a: Operand, b: Operand): Tensor => binaryOp('eq', a, b);
/** a ≠ b as 1 or 0 (no gradient), broadcasting. */
export const ne = (a: Operand, b: Operand): Tensor => binaryOp('ne', a, b);

/** cond ? a : b elementwise with broadcasting; cond is any tensor (nonzero = true). */
export function where(cond: Tensor, a0: Operand, b0: Operand): Tensor {
  const a = typeof a0 === 'number' ? asTensor(a0, typeof b0 === 'number' ? cond : b0) : a0;
  const b = typeof b0 === 'number' ? asTensor(b0, a) : b0;
  try {
    const be = backendOf('where', cond, a, b);
    const shape = broadcastShapes(cond.shape, broadcastPair('where', a, b), 'where');
    const dtype = resultDType('where', a, b);
    const out = empty(shape, dtype, be);
    be.where(cond.storage, broadcastStrides(cond.shape, shape), a.storage, broadcastStrides(a.shape, shape), b.storage, broadcastStrides(b.shape, shape), out.storage, shape);
    return record(out, 'where', [a, b], [cond], (g) => {
      const zero = tensorFrom([0], [], g.dtype, be);
      const ga = a.requiresGrad ? reduceTo(where(cond, g, zero), a, g) : null;
      const gb = b.requiresGrad ? reduceTo(where(cond, zero, g), b, g) : null;
      zero.dispose();
      return [ga, gb];
    });
  } finally {
    disposeMade(a, a0); disposeMade(b, b0);
  }
}

/** A copy in another dtype (no gradient through int32). */
export function cast(x: Tensor, dtype: Tensor['dtype']): Tensor {
  const b = backendOf('cast', x);
  if (dtype === 'float64' && !b.supportsFloat64) throw new Error(`cast: backend '${b.name}' has no float64 tensors`);
  const out = empty(x.shape, dtype, b);
  b.cast(x.storage, out.storage, x.size);
  if (dtype === 'int32' || x.dtype === 'int32') return out;
  return record(out, 'cast', [x], [], (g) => [cast(g, x.dtype)]);
}
