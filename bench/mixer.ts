// Forward + backward of the full functional mixers, Cubit against softmax attention (issue 3):
// the case list and the measurement are src/bench/mixer.ts's (also `cubit bench mixer`).
// Prints one JSON line per case: {mixer, B, H, T, D, blockSize, threads, fwd_bwd_ms, peak_bytes,
// input_bytes, backend}.
// Usage: node --import tsx bench/mixer.ts [--threads=1,2] [--filter=T=1024] [--block=64] [--backend=native|reference]
import { setBackend } from '../src/index.ts'; // the package root registers the backends
import { benchMixer } from '../src/bench/mixer.ts';

function option(name: string): string | undefined {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}

if (option('backend')) setBackend(option('backend')!);
const threads = option('threads')?.split(',').map(Number);
const block = option('block');
benchMixer({ threads, filter: option('filter'), blockSize: block === undefined ? undefined : Number(block) });
