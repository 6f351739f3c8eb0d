// Forward + backward of the full functional mixers, Cubit against softmax attention (issue 3):
// the case list and the measurement are src/bench/mixer.ts's (also `cubit bench mixer`).
// Prints one JSON line per case: {mixer, B, H, T, D, blockSize, threads, fwd_bwd_ms, peak_bytes,
// input_bytes, backend}.
// Usage: node --import tsx bench/mixer.ts [--threads=1,2] [--filter=T=1024] [--block=64] [--backend=native|reference]
import { setBackend } from '../src/index.ts'; // the package root registers the backends
import { benchMixer } from '../src/bench/mixer.ts';
import { scriptOption } from '../src/bench/measure.ts';

if (scriptOption('backend')) setBackend(scriptOption('backend')!);
const threads = scriptOption('threads')?.split(',').map(Number);
const block = scriptOption('block');
benchMixer({ threads, filter: scriptOption('filter'), blockSize: block === undefined ? undefined : Number(block) });
