"""Write a Kipoi model folder from one of our checkpoints: ``grelu-caduceus export-kipoi``.

The folder needs no gReLU checkpoint (no pickle) to run, only ``grelu_caduceus`` installed::

    OUT/
      model.yaml            Kipoi spec: info, schema (inputs (4, L); targets with column labels), test
      model.py              shim: imports grelu_caduceus.kipoi.model.CaduceusKipoiModel (loads weights/)
      dataloader.yaml/.py   shim: grelu_caduceus.kipoi.dataloader.CaduceusIntervalDl with this model's
                            length: FASTA + BED -> one-hot (4, L), N as all-zero columns
      weights/model.json    model_params, task names, sequence length, output labels, provenance
      weights/model.safetensors   the model's tensors (tied tensors stored once)
      weights/backbone/     (CaduceusPretrainedModel only) the backbone's config.json + weights
      example_files/        genome.fa, intervals.bed (real hg19 sequence by default), expected.h5

``kipoi predict OUT --source dir --dataloader_args '{"intervals_file": ..., "fasta_file": ...}' -o p.tsv``
gives the same numbers as ``grelu-caduceus predict`` (see :mod:`grelu_caduceus.predict`): both use
the same windows, one-hot encoding and forward pass. Run ``kipoi test NAME --source dir`` from the
folder that contains ``NAME`` (Kipoi resolves ``test.expect`` against the working directory).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

from .. import predict as _predict
from ..inference import (  # noqa: F401  (export loading, importable from here as before)
    BACKBONE_DIR,
    FORMAT,
    SPEC_FILE,
    WEIGHTS_FILE,
    ExportError,
    _weights_dir,
    load_exported,
    read_spec,
)
from .inputs import predict_batch

# Default example: a real 100 kb slice of hg19 chr20 (inside the bundled demo genome and the CTCF
# task's validation block 43 Mb, so no example window was used for training).
DEMO_SLICE = (43_300_000, 43_400_000)
PRECISION_DECIMAL = 5  # kipoi test: |expected - observed| < 1.5e-5


# --------------------------------------------------------------------------- writing an export
def _json_safe(value, where: str):
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    raise ExportError(f"Cannot export {where}={value!r} ({type(value).__name__}): use plain values in model_params.")


def _model_spec(lm, weights: Path, seq_len: int, n_bins: int, checkpoint: Path, description: str | None,
                earlier: dict | None) -> dict:
    """model.json content; writes the backbone folder of a CaduceusPretrainedModel.

    ``earlier`` is the spec of the export being re-exported (None for a checkpoint): its source
    (the checkpoint and versions the weights came from) and description are kept.
    """
    import grelu

    from .. import __version__

    model_params = {k: v for k, v in lm.model_params.items() if k not in ("device",)}
    if model_params.get("model_type") == "CaduceusPretrainedModel":
        _write_backbone(_predict.caduceus_trunk(lm).backbone, weights / BACKBONE_DIR)
        # The saved backbone is already truncated; freezing does not matter for prediction.
        model_params.update(pretrained_path=BACKBONE_DIR, n_layers=None, freeze=False)
    elif any("path" in str(k) for k in model_params):
        raise ExportError(
            f"{lm.model_params.get('model_type')} reads files named in its model_params "
            f"({[k for k in model_params if 'path' in k]}); only CaduceusPretrainedModel's pretrained_path is "
            "packed into the export."
        )
    train_params = {k: lm.train_params[k] for k in ("task", "loss") if k in lm.train_params}
    return {
        "format": FORMAT,
        "model_params": _json_safe(model_params, "model_params"),
        "train_params": _json_safe(train_params, "train_params"),
        "tasks": _predict.task_names(lm),
        "seq_len": int(seq_len),
        "output_labels": _predict.output_labels(lm, n_bins),
        "output_shape": [int(lm.model.head.n_tasks), int(n_bins)],
        "source": earlier["source"] if earlier else {
            "checkpoint": checkpoint.name, "grelu_caduceus": __version__, "grelu": grelu.__version__},
        "description": description,
    }


def _write_backbone(backbone, folder: Path) -> None:
    """Save a fine-tuned backbone as an HF-format folder (its LM head is tied to the embeddings)."""
    import copy

    from ..core import CaduceusForMaskedLM, save_pretrained

    mlm = CaduceusForMaskedLM(copy.deepcopy(backbone.config), init_weights=False)
    mlm.backbone.load_state_dict(backbone.state_dict())
    mlm.to(next(backbone.parameters()).dtype)
    save_pretrained(mlm, folder, store_tied_once=True)


def _write_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from ..core.checkpoint import tied_groups

    state = model.state_dict()
    first_names = {group[0] for group in tied_groups(model)}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if k in first_names}
    save_file(tensors, str(path), metadata={"format": "pt", "written_by": FORMAT})


def write_demo_examples(folder: str | os.PathLike, region: tuple[int, int] = DEMO_SLICE) -> tuple[Path, Path]:
    """Real example files: a slice of hg19 chr20 as genome.fa and CTCF/background intervals.bed.

    The slice comes from the bundled demo genome (hg19 chr20:40-44 Mb); its contig is named
    ``chr20_{start}_{end}`` and BED coordinates are relative to it (hg19 = start + coordinate).
    Intervals: the bundled CTCF task's 200 bp windows inside the slice (CTCF sites and GC-matched
    background), plus a 500 bp interval (resized to the model's length) and one at the contig's
    start (its window runs past the contig edge and is padded with N).

    Returns:
        (fasta path, bed path).
    """
    from ..data.bundled import demo_genome_contig, demo_genome_fasta, demo_genome_offset, read_task_table
    from ..data.genome import FastaGenome

    start, end = region
    offset = demo_genome_offset()
    genome = FastaGenome(demo_genome_fasta())
    contig_len = genome.sizes[demo_genome_contig()]
    if not offset <= start < end <= offset + contig_len:
        raise ExportError(f"Example region {start}-{end} is outside the bundled demo genome (hg19 chr20:"
                          f"{offset}-{offset + contig_len}).")
    sequence = genome.fetch(demo_genome_contig(), start - offset, end - offset)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    contig = f"chr20_{start}_{end}"
    fasta = folder / "genome.fa"
    lines = [f">{contig} hg19 chr20:{start + 1}-{end} (1-based, inclusive)"]
    lines += textwrap.wrap(sequence, 60)
    fasta.write_text("\n".join(lines) + "\n")
    table = read_task_table("ctcf")
    table = table[(table.chrom == "chr20") & (table.start >= start) & (table.end <= end)].sort_values("start")
    rows = [(contig, 0, 120, "contig_start_padded_with_N")]
    rows += [(contig, r.start - start, r.end - start, f"{'ctcf_site' if r.label else 'background'}_{r.split}")
             for r in table.itertuples()]
    middle = (end - start) // 2
    rows.append((contig, middle - 250, middle + 250, "interval_500bp_resized"))
    bed = folder / "intervals.bed"
    header = (f"# hg19 chr20:{start}-{end} as contig {contig}; hg19 position = {start} + BED coordinate.\n"
              "# Names: bundled CTCF task windows (site or GC-matched background, split), and two examples\n"
              "# of resizing: a 500 bp interval and one whose window runs past the contig start (N padding).\n")
    bed.write_text(header + "".join(f"{c}\t{s}\t{e}\t{n}\n" for c, s, e, n in rows))
    return fasta, bed


def _copy_examples(folder: Path, example_fasta, example_bed) -> tuple[Path, Path]:
    if example_fasta is None:
        return write_demo_examples(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src_fasta, src_bed = Path(example_fasta), Path(example_bed)
    for src in (src_fasta, src_bed):
        if not src.is_file():
            raise ExportError(f"Example file {src} not found.")
    fasta = folder / ("genome.fa.gz" if src_fasta.name.endswith((".gz", ".bgz")) else "genome.fa")
    shutil.copyfile(src_fasta, fasta)
    if fasta.suffix == ".gz" and Path(f"{src_fasta}.gzi").is_file():
        shutil.copyfile(f"{src_fasta}.gzi", f"{fasta}.gzi")
    bed = folder / "intervals.bed"
    shutil.copyfile(src_bed, bed)
    return fasta, bed


def _write_expected(path: Path, inputs: np.ndarray, preds: np.ndarray) -> None:
    """HDF5 file read by ``kipoi test`` (test.expect): datasets /inputs and /preds."""
    try:
        import h5py
    except ImportError as err:
        raise ExportError("Writing the Kipoi test file needs h5py: pip install 'grelu-caduceus[kipoi]'.") from err

    with h5py.File(path, "w") as f:
        f.create_dataset("inputs", data=inputs.astype(np.float32))
        f.create_dataset("preds", data=preds.astype(np.float32))


def export_kipoi(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    example_fasta: str | os.PathLike | None = None,
    example_bed: str | os.PathLike | None = None,
    seq_len: int | None = None,
    conjoin="auto",
    overwrite: bool = False,
    description: str | None = None,
) -> Path:
    """Write a Kipoi model folder for a checkpoint (see the module docstring for its layout).

    Args:
        checkpoint: a gReLU checkpoint (.ckpt) of one of our models, or an exported folder (its
            recorded source and description are kept: re-exporting kipoi_model/ writes it again).
        out_dir: folder to write; must not exist or be empty unless ``overwrite``.
        example_fasta, example_bed: example inputs for ``kipoi test``; default a real 100 kb slice
            of hg19 chr20 with CTCF-site and background intervals (:func:`write_demo_examples`).
        seq_len: input length of the Kipoi model; default the checkpoint's training length.
        conjoin: "auto" (conjoin Caduceus-Ph), True or False: fixed into the exported model.
        overwrite: replace the files of an existing export in ``out_dir``.
        description: extra text for the model's info.doc (what it predicts, how it was trained).

    Returns:
        ``out_dir`` as a Path.
    """
    out = Path(out_dir).expanduser().resolve()
    if (example_fasta is None) != (example_bed is None):
        raise ExportError("Give both example_fasta and example_bed (or neither, for the bundled real example).")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty: choose a new --out folder, or add --overwrite to replace "
                          "the export in it.")
    from ..checkpoint_files import resolve_run_folder

    checkpoint = resolve_run_folder(checkpoint)  # a training run folder: its best.ckpt (else last.ckpt)
    earlier = read_spec(checkpoint) if checkpoint.is_dir() else None
    if earlier and description is None:
        description = earlier.get("description")
    lm = _predict.load_model(checkpoint, conjoin=conjoin)
    seq_len = seq_len or _predict.training_seq_len(lm)
    if not seq_len:
        raise ExportError(f"{checkpoint} does not record its training sequence length: give it with --seq-len.")
    probe = _predict.predict_onehot(lm, torch.zeros(1, 4, int(seq_len)))
    n_bins = probe.shape[1] // int(lm.model.head.n_tasks)

    # Everything is written into a new folder beside ``out`` and moved into place at the end, so a
    # failed export leaves nothing behind (and a retry is not refused as "not empty").
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_export(build, out.name, lm, seq_len, n_bins, Path(checkpoint), description, earlier, example_fasta,
                      example_bed)
        _move_into_place(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


def _write_export(build: Path, name: str, lm, seq_len: int, n_bins: int, checkpoint: Path, description, earlier,
                  example_fasta, example_bed) -> None:
    """Write every file of an export into the empty folder ``build`` (to be renamed ``name``)."""
    import warnings

    from ..errors import InputWarning

    umask = os.umask(0)
    os.umask(umask)
    build.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is as readable as any new folder
    weights = build / "weights"
    weights.mkdir()
    spec = _model_spec(lm, weights, seq_len, n_bins, checkpoint, description, earlier)
    (weights / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    _write_weights(lm.model, weights / WEIGHTS_FILE)

    fasta, bed = _copy_examples(build / "example_files", example_fasta, example_bed)
    with warnings.catch_warnings():
        if example_fasta is None:  # the bundled example pads one window with N on purpose (its BED says so)
            warnings.simplefilter("ignore", InputWarning)
        windows = _predict.IntervalWindows(fasta, bed, seq_len)
    inputs = torch.stack([windows[i] for i in range(len(windows))]).numpy()
    for index in fasta.parent.glob(fasta.name + ".[fg]ai"):  # reading the example indexed it: ship the FASTA alone
        index.unlink()
    exported = load_exported(build)
    preds = predict_batch(exported, inputs)
    reference = _predict.predict_onehot(lm, inputs)
    gap = float(np.abs(preds - reference).max())
    if not gap <= 1e-5:
        raise ExportError(f"The exported model differs from the checkpoint by {gap:.3g} on the examples (a bug).")
    _write_expected(build / "example_files" / "expected.h5", inputs, preds)

    (build / "model.py").write_text(model_shim())
    (build / "dataloader.py").write_text(dataloader_shim(seq_len))
    (build / "dataloader.yaml").write_text(_dump_yaml(_dataloader_yaml(seq_len, fasta, bed, build), name))
    (build / "model.yaml").write_text(_dump_yaml(_model_yaml(spec, lm, build.with_name(name)), name))
    (build / "README.md").write_text(_readme(spec, name))
    for path in build.rglob("*"):  # safetensors and h5py write their files private (0600)
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _move_into_place(build: Path, out: Path) -> None:
    """Rename the finished ``build`` folder to ``out``; into an existing ``out`` (overwrite), each
    entry replaces the one of the same name (other files of ``out`` are kept)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        build.rename(out)
        return
    for entry in sorted(build.iterdir()):
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        entry.rename(target)


# --------------------------------------------------------------------------- Kipoi files
# Kipoi loads model.py and dataloader.py by file path: they import the installed package's classes
# (grelu_caduceus.kipoi), so the code runs and is tested as normal code and only this shim is written.
_MODEL_SHIM = '''"""Kipoi model of a grelu-caduceus export (written by `grelu-caduceus export-kipoi`).

The code is grelu_caduceus.kipoi.model in the installed grelu-caduceus; weights/ holds this model.
"""

from grelu_caduceus.kipoi.model import CaduceusKipoiModel

__all__ = ["CaduceusKipoiModel"]
'''

_DATALOADER_SHIM = '''"""Kipoi dataloader of a grelu-caduceus export (written by `grelu-caduceus export-kipoi`).

The code is grelu_caduceus.kipoi.dataloader in the installed grelu-caduceus; this class only sets
the default window length to this model's input length (weights/model.json seq_len).
"""

from grelu_caduceus.kipoi.dataloader import CaduceusIntervalDl as _IntervalDl

SEQ_LEN = {seq_len}


class CaduceusIntervalDl(_IntervalDl):
    def __init__(self, intervals_file, fasta_file, seq_len=SEQ_LEN):
        super().__init__(intervals_file, fasta_file, seq_len)
'''


def model_shim() -> str:
    """The model.py of an export: imports :class:`grelu_caduceus.kipoi.model.CaduceusKipoiModel`."""
    return _MODEL_SHIM


def dataloader_shim(seq_len: int) -> str:
    """The dataloader.py of an export: :class:`grelu_caduceus.kipoi.dataloader.CaduceusIntervalDl`
    with ``seq_len`` defaulting to the model's input length."""
    return _DATALOADER_SHIM.format(seq_len=int(seq_len))


_DEPENDENCIES = {
    "conda": ["python>=3.10", "pip"],
    # grelu-caduceus itself is installed from its repository (pip install -e '.[kipoi]'); see README.md.
    "pip": ["torch>=2.1", "grelu>=1.1,<1.2", "safetensors", "h5py", "grelu-caduceus"],
}


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _dataloader_yaml(seq_len: int, fasta: Path, bed: Path, out: Path) -> dict:
    return {
        "defined_as": "dataloader.CaduceusIntervalDl",
        "args": {
            "intervals_file": {"doc": "BED file of intervals (0-based, end-exclusive; extra columns ignored)",
                               "example": _relative(bed, out)},
            "fasta_file": {"doc": "Reference genome FASTA (plain, or bgzip .fa.gz with .gzi)",
                           "example": _relative(fasta, out)},
            "seq_len": {"doc": f"window length in bp around each interval's centre (the model's: {seq_len})",
                        "optional": True},
        },
        "info": {
            "authors": [{"name": "grelu-caduceus maintainers"}],
            "doc": "One-hot windows (4, seq_len), rows A, C, G, T, N as all-zero columns, centred on each "
                   "BED interval; windows running past a chromosome end are padded with N.",
        },
        "dependencies": _DEPENDENCIES,
        "output_schema": {
            "inputs": {"name": "seq", "shape": f"(4, {int(seq_len)})",
                       "doc": "One-hot DNA (A, C, G, T rows; N = all-zero column)", "associated_metadata": "ranges"},
            "metadata": {"ranges": {"type": "GenomicRanges", "doc": "Window read for each interval (0-based)"}},
        },
    }


def _model_yaml(spec: dict, lm, out: Path) -> dict:
    params, description = spec["model_params"], spec["description"]
    kind = params["model_type"]
    if kind.startswith("Caduceus"):
        trunk = _predict.caduceus_trunk(lm)
        cfg = trunk.backbone.config
        arch = (f"Caduceus-{'PS' if cfg.rcps else 'Ph'} (bi-directional{', RC-equivariant' if cfg.rcps else ''} "
                f"Mamba), d_model={cfg.d_model}, n_layer={cfg.n_layer}"
                + (", post-hoc conjoined (predictions averaged over both strands)" if trunk.conjoin else ""))
    else:
        arch = kind
    task = spec["train_params"].get("task", "regression")
    activation = {"binary": "probabilities (sigmoid)", "multiclass": "class probabilities (softmax)"}.get(
        task, "predicted values")
    n_tasks, n_bins = spec["output_shape"]
    doc = (
        f"{description.strip()}\n\n" if description else ""
    ) + (
        f"{arch}, trained with gReLU via grelu-caduceus (task: {task}). Input: {spec['seq_len']} bp of DNA "
        f"one-hot encoded as (4, {spec['seq_len']}), rows A, C, G, T, N as an all-zero column (the dataloader "
        "centres each BED interval in a window of that length; 0.25-valued N columns from kipoiseq are "
        f"accepted too). Output: {activation}, {n_tasks} task(s)"
        + (f" x {n_bins} bins" if n_bins > 1 else "")
        + f": {', '.join(spec['output_labels'][:10])}{' ...' if len(spec['output_labels']) > 10 else ''}. "
        "The same numbers come from `grelu-caduceus predict --model THIS_FOLDER --fasta FA --bed BED --out TSV`."
    )
    return {
        "defined_as": "model.CaduceusKipoiModel",
        "args": {"weights": "weights"},
        "default_dataloader": ".",
        "info": {
            "authors": [{"name": "grelu-caduceus maintainers"}],
            "doc": doc,
            "version": spec["source"]["grelu_caduceus"],
            "license": "MIT",
            "cite_as": "https://arxiv.org/abs/2403.03234",
            "trained_on": f"checkpoint {spec['source']['checkpoint']}; tasks {', '.join(spec['tasks'])}",
            "training_procedure": f"gReLU {spec['source']['grelu']} LightningModel, model_type {kind}",
            "tags": ["DNA", "Caduceus", "gReLU"],
        },
        "dependencies": _DEPENDENCIES,
        "schema": {
            "inputs": {"name": "seq", "shape": f"(4, {spec['seq_len']})",
                       "doc": "One-hot DNA (A, C, G, T rows; N = all-zero column)", "associated_metadata": "ranges"},
            "targets": {"shape": f"({len(spec['output_labels'])},)",
                        "doc": f"Model output ({activation}), one column per label",
                        "column_labels": list(spec["output_labels"])},
        },
        "test": {"expect": f"{out.name}/example_files/expected.h5", "precision_decimal": PRECISION_DECIMAL},
    }


def _readme(spec: dict, name: str) -> str:
    description = spec["description"]
    labels = ", ".join(spec["output_labels"][:10]) + (" ..." if len(spec["output_labels"]) > 10 else "")
    about = f"{description.strip()}\n\n" if description else ""
    return f"""# {name}: a grelu-caduceus model for Kipoi

{about}Written by `grelu-caduceus export-kipoi` from `{spec['source']['checkpoint']}`
({spec['model_params']['model_type']}; outputs: {labels}). Needs `grelu_caduceus` installed
(`pip install -e '.[kipoi]'` in the grelu-caduceus repository); no network.

From the folder that contains `{name}/`:

```bash
kipoi test {name} --source dir
kipoi predict {name} --source dir \\
  --dataloader_args '{{"intervals_file": "{name}/example_files/intervals.bed", "fasta_file": "{name}/example_files/genome.fa"}}' \\
  -o predictions.tsv          # one row per interval; columns preds/0, ... ({labels}); add --keep_metadata for the windows
grelu-caduceus predict --model {name} --fasta {name}/example_files/genome.fa \\
  --bed {name}/example_files/intervals.bed --out ours.tsv     # the same numbers, without Kipoi
```

* Input: each BED interval is resized around its centre to {spec['seq_len']} bp
  (`centre = (start + end) // 2`, kipoiseq's rule) and one-hot encoded as (4, {spec['seq_len']}),
  rows A, C, G, T; N and bases past a chromosome end are all-zero columns. kipoiseq's
  `SeqIntervalDl` (with `alphabet_axis: 0`) also works: its 0.25-valued N columns are zeroed.
* Output: (n_intervals, {len(spec['output_labels'])}) after the task's activation ({spec['train_params'].get('task')}).
* Files: `weights/model.json` (architecture and labels), `weights/model.safetensors` (weights),
  `example_files/` (genome.fa, intervals.bed and `expected.h5`, the `kipoi test` reference).
* `.h5` output of `kipoi predict` fails with numpy 2 (a kipoi 0.8.6 bug): use `.tsv` or `.parquet`.
"""


def _dump_yaml(data: dict, folder_name: str) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = (f"# Written by `grelu-caduceus export-kipoi`. Test: `kipoi test {folder_name} --source dir`, run from\n"
              "# the folder that contains this one (Kipoi resolves test.expect against the working directory).\n")
    return header + yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)

