/**
 * Element types. float32 is the working type; float64 exists for the reference backend's oracles
 * and gradient checks; int32 holds token ids, document ids and masks.
 */
export type DType = 'float32' | 'float64' | 'int32';
/** The typed array behind each dtype: Float32Array, Float64Array or Int32Array. */
export type TypedArray = Float32Array | Float64Array | Int32Array;

export function arrayFor(dtype: DType, length: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'int32': return new Int32Array(length);
  }
}

export function bytesPer(dtype: DType): number {
  return dtype === 'float64' ? 8 : 4;
}

export function dtypeOf(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  return 'int32';
}

export function isFloat(dtype: DType): boolean {
  return dtype !== 'int32';
}
