"""Read and write Hugging Face-format Caduceus folders: config.json + model.safetensors (or
pytorch_model.bin), with the released state-dict key names."""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .caduceus import CaduceusForMaskedLM
from .config import CaduceusConfig
from .errors import CheckpointError  # noqa: F401  (raised here; importable from here as before)
from .mamba import cast_keeping_ssm_float32

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_pretrained(path, device=None, dtype=None, scan_backend="auto", strict=True, revision=None, cache_dir=None,
                    local_files_only=None, trust_pickle=False) -> CaduceusForMaskedLM:
    """Load a Caduceus masked LM from an HF-format folder or a hub name, in eval mode.

    Args:
        path: folder with config.json and model.safetensors or pytorch_model.bin, or a hub name such as
            ``kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16`` (see ``core.hub``).
        revision, cache_dir, local_files_only: for a hub name (see ``core.hub.resolve_checkpoint_folder``).
        trust_pickle: allow a pytorch_model.bin that needs full unpickling (see ``core.hub.read_weight_file``).
        device, dtype: where and in which float dtype to place the weights (A_log and D stay float32,
            as in mamba-ssm; float64 with ``dtype=torch.float64``).
        scan_backend: selective-scan backend (see ``grelu_caduceus.core.scan.BACKENDS``).
        strict: refuse unknown or missing tensors (tied tensors may be stored once or under every name).

    Returns:
        ``CaduceusForMaskedLM``: ``model(ids)`` gives logits (B, L, V), ``model.backbone(ids)`` hidden states.
    """
    from .hub import resolve_checkpoint_folder

    folder = resolve_checkpoint_folder(path, revision=revision, cache_dir=cache_dir,
                                       local_files_only=local_files_only)
    if not folder.is_dir():
        raise CheckpointError(f"Checkpoint folder {folder} does not exist (expected a folder with config.json).")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"No config.json in {folder}: is this an HF-format Caduceus checkpoint folder?")
    config = CaduceusConfig.from_json_file(config_file)
    state = read_state_dict(folder, trust_pickle=trust_pickle)
    model = CaduceusForMaskedLM(config, init_weights=False)
    load_state_dict_tied(model, state, strict=strict)
    model.set_scan_backend(scan_backend)
    return cast_keeping_ssm_float32(model, device=device, dtype=dtype).eval()


def read_state_dict(folder: Path, trust_pickle: bool = False) -> dict:
    """The tensors of the first weight file found in ``folder`` (safetensors preferred)."""
    from .hub import read_weight_file

    for name in WEIGHT_FILES:
        f = folder / name
        if f.is_file():
            return read_weight_file(f, trust_pickle=trust_pickle)
    raise CheckpointError(f"No weights in {folder}: expected one of {', '.join(WEIGHT_FILES)}.")


def tied_groups(model: torch.nn.Module) -> list[list[str]]:
    """State-dict names that share one tensor, each group in state-dict order (first = canonical)."""
    by_id: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(t), []).append(name)
    return list(by_id.values())


def load_state_dict_tied(model: torch.nn.Module, state: dict, strict: bool = True) -> None:
    """Load ``state`` into ``model``, accepting tied tensors stored once or under each of their names.

    Raises CheckpointError naming the tensors that are unknown, missing, disagreeing or mis-shaped.
    """
    expected = model.state_dict()
    problems = []
    filled = {}
    for group in tied_groups(model):
        present = [n for n in group if n in state]
        if not present:
            problems.append(f"missing tensor {group[0]}")
            continue
        first = state[present[0]]
        for other in present[1:]:
            if state[other].shape != first.shape or not torch.equal(state[other], first):
                problems.append(f"tied tensors {present[0]} and {other} differ")
        want = expected[group[0]].shape
        if first.shape != want:
            problems.append(f"{present[0]} has shape {tuple(first.shape)}, the config needs {tuple(want)}")
        for n in group:
            filled[n] = first
    unknown = sorted(set(state) - set(expected))
    if unknown:
        problems.append("unknown tensors " + ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else ""))
    if problems and (strict or any("shape" in p for p in problems)):
        raise CheckpointError("Checkpoint does not fit the model: " + "; ".join(problems[:10]))
    model.load_state_dict(filled, strict=False)


def save_pretrained(model: CaduceusForMaskedLM, path, store_tied_once: bool = False) -> Path:
    """Write ``model`` as an HF-format folder (config.json + model.safetensors).

    Tied tensors are written under every name by default (as the released checkpoints' loaders
    expect); ``store_tied_once`` keeps only the first name of each tied group.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    keep = set(state)
    if store_tied_once:
        keep = {group[0] for group in tied_groups(model)}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if k in keep}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(folder / "config.json")
    return folder
