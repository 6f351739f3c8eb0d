// PyTorch-style methods on Tensor (x.add(y).relu().sum()), installed on the prototype so that
// core/tensor.ts need not import the ops (ops sit above tensors in the layering).
import { Tensor } from '../core/tensor.ts';
import * as ew from './elementwise.ts';
import { matmul, type MatmulOptions } from './matmul.ts';
import { logSoftmax, softmax } from './nn.ts';
import { logsumexp, max, mean, min, sum, type ReduceOptions } from './reduce.ts';
import { clone, detach, flatten, permute, reshape, slice, squeeze, transpose, unsqueeze } from './shape.ts';

type Axes = number | readonly number[] | undefined;

declare module '../core/tensor.ts' {
  interface Tensor {
    add(o: ew.Operand): Tensor; sub(o: ew.Operand): Tensor; mul(o: ew.Operand): Tensor; div(o: ew.Operand): Tensor;
    pow(p: ew.Operand): Tensor; neg(): Tensor; exp(): Tensor; log(): Tensor; sqrt(): Tensor; rsqrt(): Tensor;
    tanh(): Tensor; sigmoid(): Tensor; silu(): Tensor; gelu(): Tensor; relu(): Tensor; square(): Tensor; abs(): Tensor;
    matmul(o: Tensor, opts?: MatmulOptions): Tensor;
    sum(axis?: Axes, opts?: ReduceOptions): Tensor; mean(axis?: Axes, opts?: ReduceOptions): Tensor;
    max(axis?: Axes, opts?: ReduceOptions): Tensor; min(axis?: Axes, opts?: ReduceOptions): Tensor;
    logsumexp(axis?: Axes, opts?: ReduceOptions): Tensor;
    softmax(): Tensor; logSoftmax(): Tensor;
    reshape(shape: readonly number[]): Tensor; flatten(): Tensor; permute(perm: readonly number[]): Tensor;
    transpose(a?: number, b?: number): Tensor; squeeze(axis?: number): Tensor; unsqueeze(axis: number): Tensor;
    slice(axis: number, start: number, end: number): Tensor; clone(): Tensor; detach(): Tensor;
  }
}

const P = Tensor.prototype;
P.add = function (o) { return ew.add(this, o); };
P.sub = function (o) { return ew.sub(this, o); };
P.mul = function (o) { return ew.mul(this, o); };
P.div = function (o) { return ew.div(this, o); };
P.pow = function (p) { return ew.pow(this, p); };
P.neg = function () { return ew.neg(this); };
P.exp = function () { return ew.exp(this); };
P.log = function () { return ew.log(this); };
P.sqrt = function () { return ew.sqrt(this); };
P.rsqrt = function () { return ew.rsqrt(this); };
P.tanh = function () { return ew.tanh(this); };
P.sigmoid = function () { return ew.sigmoid(this); };
P.silu = function () { return ew.silu(this); };
P.gelu = function () { return ew.gelu(this); };
P.relu = function () { return ew.relu(this); };
P.square = function () { return ew.square(this); };
P.abs = function () { return ew.abs(this); };
P.matmul = function (o, opts) { return matmul(this, o, opts); };
P.sum = function (axis, opts) { return sum(this, axis, opts); };
P.mean = function (axis, opts) { return mean(this, axis, opts); };
P.max = function (axis, opts) { return max(this, axis, opts); };
P.min = function (axis, opts) { return min(this, axis, opts); };
P.logsumexp = function (axis, opts) { return logsumexp(this, axis, opts); };
P.softmax = function () { return softmax(this); };
P.logSoftmax = function () { return logSoftmax(this); };
P.reshape = function (shape) { return reshape(this, shape); };
P.flatten = function () { return flatten(this); };
P.permute = function (perm) { return permute(this, perm); };
P.transpose = function (a, b) { return transpose(this, a, b); };
P.squeeze = function (axis) { return squeeze(this, axis); };
P.unsqueeze = function (axis) { return unsqueeze(this, axis); };
P.slice = function (axis, start, end) { return slice(this, axis, start, end); };
P.clone = function () { return clone(this); };
P.detach = function () { return detach(this); };
