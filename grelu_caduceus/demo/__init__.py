"""`grelu-caduceus demo`: the end-to-end job on bundled real human DNA (hg19 chr20).

1. Score the shipped pretrained Caduceus-PS masked LM (``grelu_caduceus.data.pretrained_lm_folder()``:
   d_model 64, 4 layers, pretrained on hg19 chr20's train blocks by ``scripts/build_pretrained_lm.py``)
   on the held-out chr20:43-44 Mb (the demo genome's val region), against simple baselines of its own
   training DNA scored on the same windows, the same masks and the same corrupted inputs: the most
   frequent base and k-mer context models (k bases on each side, k = 1..5, from the counts stored
   beside its weights).
2. Fine-tune it (``CaduceusPretrainedModel``) on a bundled labelled task (default: GM12878 ATAC-seq
   peaks, 200 bp windows vs GC-matched background; train/val/test by 1 Mb blocks of chr20).
3. Fine-tune the same architecture from scratch (``CaduceusModel``) beside it: same budget, same
   checkpoint choice (best validation AUROC).
4. A short masked-LM pretraining of its own on the demo genome's train region (chr20:40-43 Mb), so
   that the whole training path runs, scored like step 1 against baselines fitted on the same 3 Mb.
5. Attributions (input x gradient) of held-out positive windows, drawn as sequence logos.
6. ``metrics.json``, ``report.md`` and PNG plots in the output folder.

Every stage records its result under ``OUT/stages``; running again with the same ``--out`` reuses
finished stages and resumes an interrupted pretraining or fine-tuning from its last checkpoint.

One module per job, in the order a run uses them:

* :mod:`.budgets`: run sizes (``quick``, ``default``, ``full``) and the bundled fine-tuning tasks;
* :mod:`.baselines`: the most-frequent-base and k-mer context baselines (fitted, or from stored counts);
* :mod:`.masked_eval`: masked accuracy of the model and the baselines on the same sites;
* :mod:`.stages`: :class:`DemoRun`, the stages (evaluate, fine-tune, own pretraining, attributions);
* :mod:`.report`: report.md and the plots;
* :mod:`.run`: :func:`run_demo`, all stages and metrics.json;
* :mod:`.console`: messages (logging) and progress bars (tqdm).

The command line is :mod:`grelu_caduceus.cli.demo`.
"""

from .baselines import KmerContextModel, MostFrequentBase
from .budgets import BUDGETS, DemoBudget
from .masked_eval import MaskedEvalSet, evaluate_masked, paired_bootstrap_ci
from .run import run_demo

__all__ = ["BUDGETS", "DemoBudget", "KmerContextModel", "MaskedEvalSet", "MostFrequentBase", "evaluate_masked",
           "paired_bootstrap_ci", "run_demo"]
