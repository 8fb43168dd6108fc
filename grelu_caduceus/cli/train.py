"""``grelu-caduceus train``: Hydra configs -> gReLU ``model_params`` / ``train_params`` -> a trained model.

    grelu-caduceus train model=caduceus task=mlm data=demo_genome trainer.max_steps=5 hydra.run.dir=runs/mlm
    grelu-caduceus train model=caduceus_ph data=atac trainer=gpu model.d_model=256
    grelu-caduceus train experiment=pretrain_1k data.fasta=hg38.fa data.splits=sequences_human.bed
    grelu-caduceus train model=hyenadna --cfg job           # print the composed config, run nothing
    grelu-caduceus train -m model=caduceus,hyenadna          # a Hydra sweep, one run per value

Configs live in one place, ``grelu_caduceus/conf/`` (package data, so an installed package finds
them); ``configs/`` at the repository root is a symbolic link to it. Add your own config folders with
``hydra.searchpath=[file:///path/to/my_configs]`` (or ``--config-dir DIR``): a file
``my_configs/model/mine.yaml`` becomes ``model=mine``.

A run writes into ``hydra.run.dir``: ``checkpoints/`` (last.ckpt, best.ckpt, periodic ones),
``logs/`` (CSV metrics), ``.hydra/`` (the composed config and the overrides), ``grelu_params.yaml``
(the gReLU model_params / train_params) and ``train.log``. Checkpoints load with gReLU's
``LightningModel.load_from_checkpoint`` (``MLMLightningModel`` for task=mlm) once grelu_caduceus
is imported.

Every mistake in the command line (unknown group option, key, type or value) stops before any
work with one line that names the problem and the valid choices; see :mod:`.config_schema`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import UserError, is_user_error
from .config_schema import ConfigError, ValidatedConfig, mlm_model_params, validate

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
# argv[0] while Hydra runs: Lightning's DDP launcher re-runs it for the processes of other devices
TRAIN_SCRIPT = Path(__file__).resolve().parent / "train_script.py"
CONFIG_NAME = "train"
GROUPS = ("model", "task", "data", "trainer", "experiment")
VERSION_BASE = "1.3"

# Hydra's own command-line flags that `train` passes through (flag -> takes a value)
HYDRA_FLAGS = {"--cfg": True, "-c": True, "--package": True, "-p": True, "--resolve": False, "--multirun": False,
               "-m": False, "--info": False, "-i": False, "--hydra-help": False}
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


# --------------------------------------------------------------------------- composing
def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the shipped configs of a group, e.g. group_options("model") -> ["borzoi_lite", ...]."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def compose_config(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """The composed ``train`` config for Hydra overrides, with clean errors (ConfigError).

    Args:
        overrides: e.g. ["model=hyenadna", "trainer.max_steps=5"].
        return_hydra_config: keep the ``hydra`` node (run dir, choices, ...).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # A model parameter the model's yaml does not list (its constructor, e.g. every CaduceusConfig field,
    # has many more) is added rather than refused here; validate() checks model keys against the
    # constructor and names the valid ones.
    overrides = [f"++{o}" if o.startswith("model.") and "=" in o else o for o in overrides]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=VERSION_BASE, job_name="train"):
        try:
            return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
        except Exception as err:  # Hydra/OmegaConf errors -> one clear line, explained below
            error = err
    raise explain_compose_error(error, overrides) from None


def explain_compose_error(err: Exception, overrides: list[str]) -> UserError:
    """Turn a Hydra composition error into a one-line ConfigError naming the valid choices."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.options is not None and "/" in (err.missing_cfg_file or ""):
        group, name = err.missing_cfg_file.rsplit("/", 1)
        return ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(err.options)}"
                           + _did_you_mean(name, err.options))
    if isinstance(err, OverrideParseException):
        return ConfigError(f"cannot read the override {err.override!r}: {_first_line(err.message)} "
                           "(the syntax is key=value, e.g. model.d_model=256 or trainer.devices=[0,1])")
    cause = err.__cause__
    if isinstance(err, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return _unknown_key_error(str(cause.full_key), overrides)
    return ConfigError(_first_line(str(err)))


def _unknown_key_error(full_key: str, overrides: list[str]) -> ConfigError:
    parent_key, _, name = full_key.rpartition(".")
    if full_key.startswith("hydra"):
        return ConfigError(f"{full_key} is not a Hydra setting (see `grelu-caduceus train --hydra-help`)")
    # Compose without the offending override to list what the parent node does accept.
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != full_key]
    try:
        cfg = compose_config(rest)
        node = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    except UserError:
        node = None
    if not parent_key:
        valid = [*GROUPS, "seed"]
        return ConfigError(f"{full_key!r} is neither a config group nor a key; groups: {', '.join(GROUPS)}; "
                           f"keys: seed, or dotted keys such as model.d_model" + _did_you_mean(name, valid))
    valid = list(node.keys()) if isinstance(node, DictConfig) else []
    listing = f"; valid keys of {parent_key}: {', '.join(valid)}" if valid else ""
    return ConfigError(f"{full_key} is not a known key{listing}" + _did_you_mean(name, valid))


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else "invalid configuration"


def load_config(overrides=(), complete: bool = True) -> ValidatedConfig | None:
    """Compose and validate: the checked config for these overrides (see config_schema.validate)."""
    return validate(compose_config(overrides), complete=complete)


# --------------------------------------------------------------------------- config -> gReLU
def _n_devices(trainer) -> int:
    if isinstance(trainer.devices, (list, tuple)):
        return len(trainer.devices)
    if trainer.devices in (-1, "auto"):
        if trainer.accelerator in ("gpu", "cuda", "auto"):
            import torch

            return max(1, torch.cuda.device_count())
        return 1
    return int(trainer.devices)


def trainer_params(checked: ValidatedConfig, out_dir) -> dict:
    """The trainer section (and seed) as train_params keys, as read by gReLU and by our Trainer builder
    (grelu_caduceus.training.build_trainer, also behind tasks.mlm.build_mlm_trainer), and stored in
    checkpoints."""
    params = asdict(checked.trainer)
    params.pop("resume")
    return {**params, "seed": checked.seed, "save_dir": str(out_dir), "checkpoint": True}


def grelu_params(checked: ValidatedConfig, n_tasks: int | None = None, seq_len: int | None = None,
                 out_dir=".") -> tuple[dict, dict]:
    """(model_params, train_params) for gReLU's LightningModel (or MLMLightningModel for task=mlm).

    Args:
        checked: a validated config.
        n_tasks, seq_len: from the data; fill ``model.n_tasks`` / ``seq_len`` / ``l_max`` where the
            config leaves them null.
        out_dir: the run folder (train_params["save_dir"]).
    """
    model = dict(checked.model)
    task = asdict(checked.task)
    name = task.pop("name")
    if name == "mlm":
        return mlm_model_params(model), {**task, "rc_aug": _mlm_rc_aug(checked), **trainer_params(checked, out_dir)}
    filled = {"n_tasks": n_tasks, "seq_len": seq_len, "l_max": seq_len}
    for key, value in filled.items():
        if key in model and model[key] is None:
            if value is None:
                raise ConfigError(f"model.{key} is null and there is no data to fill it from: set model.{key}=...")
            model[key] = value
    return model, {"task": name, **task, **trainer_params(checked, out_dir)}


def _mlm_rc_aug(checked: ValidatedConfig) -> bool:
    # Caduceus-Ph learns reverse-complement symmetry from augmentation; PS has it built in.
    if checked.task.rc_aug is not None:
        return bool(checked.task.rc_aug)
    return checked.model.get("rcps") is False


def build_lightning_model(checked: ValidatedConfig, n_tasks: int | None = None, seq_len: int | None = None,
                          out_dir="."):
    """The gReLU LightningModel (MLMLightningModel for task=mlm) a config describes."""
    import grelu_caduceus  # noqa: F401  (registers our model classes on grelu.model.models)

    model_params, train_params = grelu_params(checked, n_tasks, seq_len, out_dir)
    if checked.task.name == "mlm":
        from ..tasks.mlm import MLMLightningModel

        return MLMLightningModel(model_params, train_params)
    from grelu.lightning import LightningModel

    return LightningModel(model_params=model_params, train_params=train_params)


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What a run produced: the fitted model, its Lightning trainer and the run folder."""

    model: object
    trainer: object
    out_dir: Path

    @property
    def checkpoints(self) -> list[Path]:
        return sorted((self.out_dir / "checkpoints").glob("*.ckpt"))


def train(checked: ValidatedConfig, out_dir) -> TrainResult:
    """Build the data and model of a checked config, train, and write everything under ``out_dir``."""
    import pytorch_lightning as pl

    from ..data.genome import GenomeDataError
    from .train_data import build_datasets, steps_per_epoch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checked.seed is not None:
        # quietly: the Trainer builder seeds again with the same seed and says so (once per run)
        pl.seed_everything(checked.seed, workers=True, verbose=False)
    try:
        train_ds, val_ds = build_datasets(checked.data, checked.task.name)
    except (GenomeDataError, FileNotFoundError) as err:
        raise UserError(str(err)) from err
    seq_len = int(getattr(train_ds, "seq_len", 0)) or None
    try:
        lm = build_lightning_model(checked, n_tasks=getattr(train_ds, "n_tasks", None), seq_len=seq_len,
                                   out_dir=out_dir)
    except (FileNotFoundError, ValueError) as err:  # constructors reject what the schema cannot know
        raise UserError(f"cannot build {checked.model['model_type']}: {err}") from err
    t = checked.trainer
    resume = _resume_path(t.resume, out_dir)
    check_run_folder(checked, out_dir, resume, force=t.resume == "force")
    overrides = {"num_nodes": t.num_nodes}
    if t.limit_val_batches is not None:
        overrides["limit_val_batches"] = t.limit_val_batches
    if checked.task.name == "mlm" and t.max_steps <= 0:
        # The LR schedule needs a length: derive it from the epochs; Lightning still stops by epochs.
        per_epoch = steps_per_epoch(len(train_ds), checked.task.batch_size, t.accumulate_grad_batches, _n_devices(t))
        lm.train_params["max_steps"] = t.max_epochs * per_epoch
        overrides["max_steps"] = -1
    _write_params(lm, out_dir)
    log.info("model %s (%s parameters), task %s, %d train / %d val items; run folder %s",
             lm.model_params.get("model_type"), f"{sum(p.numel() for p in lm.parameters()):,}",
             checked.task.name, len(train_ds), len(val_ds), out_dir)
    if checked.task.name == "mlm":
        from ..tasks.mlm import train_mlm

        trainer = train_mlm(lm, train_ds, val_ds, out_dir, resume=resume, resume_hint=resume_hint(out_dir),
                            corrupt_hint=CORRUPT_RESUME_HINT, **overrides)
    else:
        trainer = labelled_trainer(lm.train_params, out_dir, resuming=resume is not None, **overrides)
        fit_labelled(lm, trainer, train_ds, val_ds, resume)
    # Periodic checkpoints follow checkpoint_every; this one makes every run end with last.ckpt.
    trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt", weights_only=False)
    result = TrainResult(lm, trainer, out_dir)
    log.info("checkpoints: %s", ", ".join(str(p) for p in result.checkpoints))
    return result


# the fix named when trainer.resume points at a truncated or corrupt checkpoint
CORRUPT_RESUME_HINT = ("resume from a complete one with trainer.resume=PATH (e.g. checkpoints/step*.ckpt or "
                       "last.ckpt), or start afresh with trainer.resume=null")


def resume_hint(out_dir: Path) -> str:
    return f"run the same command again with hydra.run.dir={out_dir} (trainer.resume=auto continues from last.ckpt)"


def labelled_trainer(train_params: dict, out_dir: Path, resuming: bool = False, **overrides):
    """The project's Trainer (grelu_caduceus.training.build_trainer) with the run-folder layout that
    MLM runs have too: checkpoints/{best,last,step*}.ckpt and logs/metrics.csv."""
    from ..training import SaveOnInterrupt, build_trainer, run_folder_checkpoint, run_folder_logger

    p = train_params
    ckpt_dir = out_dir / "checkpoints"
    callbacks = [SaveOnInterrupt(ckpt_dir, resume_hint(out_dir))]
    if p["checkpoint_every"]:
        callbacks.append(run_folder_checkpoint(ckpt_dir, filename="step{step}",
                                               every_n_train_steps=p["checkpoint_every"], save_top_k=-1))
    best = dict(dirpath=str(ckpt_dir), filename="best", monitor="val_loss", mode="min",
                save_top_k=1 if p["save_best"] else 0, save_last=True, enable_version_counter=False)
    return build_trainer(p, checkpoint=best, callbacks=callbacks, logger=run_folder_logger(p["logger"], out_dir, resuming),
                         enable_progress_bar=p["progress_bar"], num_sanity_val_steps=0, enable_model_summary=False,
                         **overrides)


def fit_labelled(lm, trainer, train_ds, val_ds, resume=None) -> None:
    """gReLU's train_on_dataset on our Trainer: records the task names and dataset attributes that
    gReLU keeps in data_params (prediction tools read them), then fits."""
    import grelu

    from ..training import fit

    lm.data_params["tasks"] = train_ds.tasks.reset_index(names="name").to_dict(orient="list")
    lm.data_params["train"] = dict(lm._get_dataset_attrs(train_ds))
    lm.data_params["val"] = dict(lm._get_dataset_attrs(val_ds))
    lm.train_params["grelu_version"] = grelu.__version__
    fit(trainer, lm, lm.make_train_loader(train_ds), lm.make_test_loader(val_ds), ckpt_path=resume,
        corrupt_hint=CORRUPT_RESUME_HINT)


def _resume_path(resume, out_dir: Path):
    if resume in (None, "none", "null", ""):
        return None
    if resume in ("auto", "force"):
        last = out_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(resume).exists():
        raise UserError(f"trainer.resume={resume}: no such checkpoint (use auto, force, null or a .ckpt path)")
    return str(resume)


# --------------------------------------------------------------------------- resume safety
RUN_CONFIG = "run_config.json"  # the configuration a run folder's checkpoints were trained with
# Keys that may change when a run is resumed: how long and where it runs, not what it trains.
RESUMABLE_KEYS = ("trainer.max_steps", "trainer.max_epochs", "trainer.resume", "trainer.progress_bar",
                  "trainer.log_every_n_steps", "trainer.devices", "trainer.num_nodes", "trainer.num_workers",
                  "trainer.limit_val_batches", "trainer.checkpoint_every")


def run_config(checked: ValidatedConfig) -> dict:
    """The configuration of a run as flat dotted keys (model.d_model, task.lr, ...)."""
    sections = {"model": dict(checked.model), "task": asdict(checked.task), "data": asdict(checked.data),
                "trainer": asdict(checked.trainer), "seed": checked.seed}
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = list(value) if isinstance(value, tuple) else value

    walk("", _yaml_safe(sections))
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """``key: old -> new`` for every key that differs, except :data:`RESUMABLE_KEYS`."""
    keys = sorted((set(saved) | set(current)) - set(RESUMABLE_KEYS))
    missing = "(unset)"
    return [f"{k}: {saved.get(k, missing)} -> {current.get(k, missing)}" for k in keys
            if saved.get(k, missing) != current.get(k, missing)]


def check_run_folder(checked: ValidatedConfig, out_dir: Path, resume, force: bool = False) -> None:
    """Refuse to resume a run folder's checkpoint with a configuration other than the one it was
    trained with; record the configuration of the run that starts or continues here.

    A resumed run would otherwise keep the old optimizer state and schedule under new settings
    (a changed ``task.lr``), or fail deep inside Lightning (a changed ``model.d_model``).
    ``trainer.resume=force`` resumes anyway when only non-model keys differ.
    """
    current = run_config(checked)
    record = out_dir / RUN_CONFIG
    if resume is not None:
        # the run the checkpoint belongs to: its own folder's record, else this folder's
        source = Path(resume).resolve().parent.parent / RUN_CONFIG
        source = source if source.is_file() else record
        if source.is_file():
            saved = json.loads(source.read_text())
            differences = config_differences(saved, current)
            model_changes = [d for d in differences if d.startswith("model.")]
            if differences and (not force or model_changes):
                shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
                fix = ("start a new run with another hydra.run.dir=..., or trainer.resume=null to train from "
                       "scratch in this folder (its checkpoints are replaced)")
                if not model_changes:
                    fix += ", or trainer.resume=force to resume with the new settings"
                raise UserError(f"{resume} was trained with a different configuration ({shown}): {fix}")
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    tmp.replace(record)  # atomic: DDP ranks re-run this into the same folder


def _write_params(lm, out_dir: Path) -> None:
    params = {"model_params": dict(lm.model_params), "train_params": dict(lm.train_params)}
    plain = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(_yaml_safe(params))))
    (out_dir / "grelu_params.yaml").write_text(OmegaConf.to_yaml(plain))


def _yaml_safe(value):
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


# --------------------------------------------------------------------------- command line
def help_text() -> str:
    groups = "\n".join(f"  {g:<11}{', '.join(group_options(g))}" for g in GROUPS)
    return f"""usage: grelu-caduceus train [GROUP=OPTION ...] [KEY=VALUE ...] [--cfg job] [-m]

Compose a training run from Hydra configs ({CONFIG_DIR}; also at configs/ in the repository)
and train it with gReLU. Defaults: model=caduceus task=binary data=ctcf trainer=cpu.

config groups and their options:
{groups}

examples:
  grelu-caduceus train model=caduceus task=mlm data=demo_genome trainer.max_steps=200
  grelu-caduceus train model=caduceus_ph data=atac model.d_model=64 trainer.max_epochs=3
  grelu-caduceus train experiment=finetune model.pretrained_path=RUN/checkpoints/last.ckpt
  grelu-caduceus train model=hyenadna --cfg job       print the composed config, run nothing
  grelu-caduceus train -m model=caduceus,hyenadna    a sweep: one run per value (multirun/)

options:
  KEY=VALUE            change a value, e.g. model.n_layer=8, trainer.devices=[0,1], seed=1
  hydra.run.dir=DIR    the run folder (checkpoints/, logs/, .hydra/, grelu_params.yaml)
  --cfg job|hydra|all  print the composed config and exit (--resolve: resolve ${{...}} values)
  -m, --multirun       run every combination of comma-separated values
  --config-dir DIR     also search DIR for configs (DIR/model/mine.yaml -> model=mine)
  --info, --hydra-help Hydra's information and help
"""


def split_arguments(argv: list[str]) -> tuple[list[str], list[str], bool, bool]:
    """argv -> (Hydra flags, overrides, multirun?, print-only?); --config-dir becomes an override."""
    flags, overrides, extra_dirs = [], [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in CONFIG_DIR_FLAGS:
            if i + 1 >= len(argv):
                raise UserError(f"{arg} needs a folder")
            extra_dirs.append(Path(argv[i + 1]).expanduser().resolve())
            i += 2
            continue
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            if name not in HYDRA_FLAGS:
                raise UserError(f"unknown option {arg}; options: --cfg job|hydra|all, --resolve, --package, "
                                "-m/--multirun, --config-dir DIR, --info, --hydra-help (overrides are KEY=VALUE "
                                "without dashes)")
            flags.append(arg)
            if HYDRA_FLAGS[name] and "=" not in arg:
                if i + 1 >= len(argv):
                    raise UserError(f"{arg} needs a value (e.g. {arg} job)")
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    if extra_dirs:
        missing = [str(d) for d in extra_dirs if not d.is_dir()]
        if missing:
            raise UserError(f"--config-dir {missing[0]}: no such folder")
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in extra_dirs) + "]")
    multirun = any(f in ("-m", "--multirun") for f in flags)
    print_only = any(f.split("=")[0] in ("--cfg", "-c", "--info", "-i", "--hydra-help") for f in flags)
    return flags, overrides, multirun, print_only


def main(argv=None) -> int:
    """``grelu-caduceus train [overrides] [--cfg job] [-m]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    flags, overrides, multirun, print_only = split_arguments(argv)
    # Compose and check before Hydra runs, so that every mistake ends in one clear line; a sweep
    # is checked value by value.
    for variant in sweep_variants(overrides) if multirun else [overrides]:
        validate(compose_config(variant), complete=not print_only)
    return run_hydra(flags + overrides)


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Override lists that together use every value of every sweep (``model=a,b``) once: the first
    values everywhere, then each other value of one sweep at a time (not the full product)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:
        raise explain_compose_error(err, overrides) from None
    choices = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            prefix = text.split("=", 1)[0]
            choices.append([f"{prefix}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    first = [values[0] for values in choices]
    variants = [first]
    for i, values in enumerate(choices):
        variants += [first[:i] + [value] + first[i + 1:] for value in values[1:]]
    return variants


def run_hydra(args: list[str]) -> int:
    """Run Hydra's own entry point (run folder, logging, --cfg, multirun) on ``_run_job``."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    outcome: dict = {}

    @hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base=VERSION_BASE)
    def _hydra_entry(cfg: DictConfig) -> None:
        try:
            _run_job(cfg)
        except Exception as err:  # keep user mistakes out of Hydra's traceback printer
            if not is_user_error(err):
                raise
            outcome.setdefault("errors", []).append(err)

    saved_argv = sys.argv
    sys.argv = [str(TRAIN_SCRIPT), *args]
    GlobalHydra.instance().clear()
    try:
        _hydra_entry()
    except SystemExit as stop:  # Hydra exits 1 after printing an unexpected error
        return int(stop.code or 0)
    finally:
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
    errors = outcome.get("errors")
    if errors:
        raise errors[0] if len(errors) == 1 else UserError("; ".join(str(e) for e in errors))
    return 0


def _run_job(cfg: DictConfig) -> TrainResult:
    from hydra.core.hydra_config import HydraConfig

    checked = validate(cfg)
    hydra_cfg = HydraConfig.get()
    check_trainer_device(checked, hydra_cfg.runtime.choices.get("trainer"))
    out_dir = Path(hydra_cfg.runtime.output_dir)
    with lightning_logs_through_hydra():
        return train(checked, out_dir)


LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


@contextlib.contextmanager
def lightning_logs_through_hydra():
    """Lightning's messages go through the handlers Hydra set up (the console and train.log) for the
    length of a run, whatever was imported first.

    pytorch_lightning and lightning_fabric, when imported while the root logger has no handler (as
    before Hydra configures logging, e.g. by the config check of task=mlm), give their loggers a bare
    stderr handler and stop them propagating, so their lines (validation metrics, "`Trainer.fit`
    stopped") would miss train.log and the console format. Restored afterwards.
    """
    saved = []
    if logging.getLogger().hasHandlers():
        for name in LIGHTNING_PACKAGES:
            logger = logging.getLogger(name)
            bare = [h for h in logger.handlers if type(h) is logging.StreamHandler]
            saved.append((logger, logger.propagate, bare))
            for handler in bare:
                logger.removeHandler(handler)
            logger.propagate = True
    try:
        yield
    finally:
        for logger, propagate, bare in saved:
            logger.propagate = propagate
            for handler in bare:
                logger.addHandler(handler)


def check_trainer_device(checked: ValidatedConfig, choice: str | None = None) -> None:
    """A trainer that asks for a GPU torch does not see: one line naming the trainer option (``choice``:
    the trainer config chosen, e.g. "gpu") and trainer=cpu, before any data is read."""
    from ..devices import check_accelerator

    accelerator = checked.trainer.accelerator
    asked = f"trainer.accelerator={accelerator}"
    if choice and choice != "cpu":
        asked = f"trainer={choice} ({asked})"
    check_accelerator(accelerator, asked, "use trainer=cpu (the default), or run on a machine with a GPU")


if __name__ == "__main__":  # python -m grelu_caduceus.cli.train OVERRIDES (DDP re-runs it the same way)
    from grelu_caduceus.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
