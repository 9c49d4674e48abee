"""Fine-tuning a mutator's model on a run's successful children (ELM's "train the next model").

    python -m mutators.finetune export RUN_DIR OUT.jsonl [--reexpress smollm2]
    python -m mutators.finetune train --data OUT.jsonl --model smollm2 --out ADAPTER_DIR \\
        --max-steps 200 --max-seconds 600 --threads 1
    elm-run mutator=smollm2 mutator.backend.adapter=ADAPTER_DIR

The export is engine code (:mod:`elm.finetune`, the store plus each operator class's
``training_example`` hook); training (:mod:`mutators.finetune.train`) needs the ``finetune``
extra (peft, datasets) and lives here because it loads models the way the hf backend does.
"""

from elm.finetune import ExportSummary, FinetuneError, export_examples
from mutators.finetune.train import TrainConfig, TrainResult, load_rows, train

__all__ = ["ExportSummary", "FinetuneError", "TrainConfig", "TrainResult", "export_examples", "load_rows", "train"]
