// `cubit export <run|checkpoint|model-folder> <dir> [--to cubit|pytorch|llama]` and
// `cubit import <torch-run|checkpoint> <run>`: moving a model out of cubit and back (docs/INTEROP.md).
import { EXPORT_TARGETS, exportModel, importRun, type ExportTarget } from '../train/interop.ts';
import { type Command, UsageError } from './args.ts';

export const exportCommand: Command = {
  name: 'export',
  summary: 'Writes a model folder (model.safetensors, config.json, tokenizer.json); --to pytorch adds modeling_cubit.py and train_torch.py.',
  usage: 'export <run-or-checkpoint-or-model-folder> <dir> [--to cubit|pytorch|llama]',
  options: {
    to: { type: 'string', description: `what to write: ${EXPORT_TARGETS.join(', ')} (default cubit; llama: all-softmax models in LlamaForCausalLM's layout)` } as never,
  },
  run(values, positionals) {
    if (positionals.length !== 2) throw new UsageError(`export: give the model to export and a new folder (see 'cubit export --help')`);
    const to = String(values.to ?? 'cubit');
    if (!(EXPORT_TARGETS as readonly string[]).includes(to)) throw new UsageError(`--to must be one of ${EXPORT_TARGETS.join(', ')}, got '${to}'`);
    const files = exportModel(positionals[0], positionals[1], { to: to as ExportTarget });
    process.stdout.write(JSON.stringify({ folder: positionals[1], to, files }, null, 2) + '\n');
    return 0;
  },
};

export const importCommand: Command = {
  name: 'import',
  summary: "Reads a checkpoint train_torch.py wrote (weights and optimizer state) into a new cubit run folder.",
  usage: 'import <torch-run-or-checkpoint> <new-run-folder>',
  options: {},
  async run(_values, positionals) {
    if (positionals.length !== 2) throw new UsageError(`import: give the checkpoint to import and a new run folder (see 'cubit import --help')`);
    const checkpoint = await importRun(positionals[0], positionals[1]);
    process.stdout.write(JSON.stringify({ run: positionals[1], checkpoint }, null, 2) + '\n');
    return 0;
  },
};
