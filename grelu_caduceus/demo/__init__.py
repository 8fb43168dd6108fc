"""`grelu-caduceus demo`: the end-to-end job on bundled real human DNA (hg19 chr20:40-44 Mb).

1. Pretrain a small RC-equivariant Caduceus-PS masked LM on the train region (first 3 Mb) and
   validate it on the held-out last 1 Mb.
2. Compare its masked accuracy with simple baselines fitted on the train region and scored on the
   same held-out windows, the same masks and the same corrupted inputs: the most frequent base and
   k-mer context models (k bases on each side, k = 1..4).
3. Fine-tune the pretrained backbone (``CaduceusPretrainedModel``) on a bundled labelled task
   (default: GM12878 ATAC-seq peaks, 200 bp windows vs GC-matched background; train/val/test by
   1 Mb blocks of chr20) and, when the budget allows, a from-scratch ``CaduceusModel`` for comparison.
4. Attributions (input x gradient) of held-out positive windows, drawn as sequence logos.
5. ``metrics.json``, ``report.md`` and PNG plots in the output folder.

Every stage records its result under ``OUT/stages``; running again with the same ``--out`` reuses
finished stages and resumes an interrupted pretraining or fine-tuning from its last checkpoint.

One module per job, in the order a run uses them:

* :mod:`.budgets`: run sizes (``quick``, ``default``, ``full``) and the bundled fine-tuning tasks;
* :mod:`.baselines`: the most-frequent-base and k-mer context baselines;
* :mod:`.masked_eval`: masked accuracy of the model and the baselines on the same sites;
* :mod:`.stages`: :class:`DemoRun`, the stages (pretrain, evaluate, fine-tune, attributions);
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
