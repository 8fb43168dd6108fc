"""Hub names wherever a checkpoint folder is accepted, tested offline on a Hugging Face cache the tests build."""

from pathlib import Path

import pytest
import torch
from helpers import write_checkpoint

from grelu_caduceus.core.hub import (
    HubCheckpointError,
    UnsafePickleError,
    is_hub_name,
    read_weight_file,
    resolve_checkpoint_folder,
)
from grelu_caduceus.errors import is_user_error

NAME = "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
SHA = "0123456789abcdef0123456789abcdef01234567"


def make_cache(cache: Path, name: str, sha: str = SHA, ref: str = "main", **kw) -> Path:
    """Lay out ``name`` as huggingface_hub caches it: models--ORG--NAME/{snapshots/<sha>/, refs/<ref>}."""
    repo = cache / ("models--" + name.replace("/", "--"))
    snap = repo / "snapshots" / sha
    write_checkpoint(snap, **kw)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(sha)
    return snap


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = make_cache(cache, NAME, d_model=16, n_layer=1, rcps=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, snap


def test_names_and_paths_are_told_apart(tmp_path):
    assert is_hub_name(NAME)
    assert is_hub_name("caduceus-ph_seqlen-1k_d_model-256_n_layer-4")  # bare released name
    assert not is_hub_name(str(tmp_path))  # existing path
    assert not is_hub_name("./some/folder") and not is_hub_name("/abs/missing") and not is_hub_name("a/b/c")
    assert not is_hub_name("run.ckpt")


def test_resolves_a_cached_name_offline(offline_cache):
    cache, snap = offline_cache
    assert resolve_checkpoint_folder(NAME) == snap
    assert resolve_checkpoint_folder(NAME, revision=SHA) == snap
    assert resolve_checkpoint_folder(NAME, cache_dir=cache, local_files_only=True) == snap


def test_revision_and_cache_dir_are_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    other_sha = "f" * 40
    snap_main = make_cache(tmp_path / "c", NAME, d_model=16, n_layer=1)
    snap_v2 = make_cache(tmp_path / "c", NAME, sha=other_sha, ref="v2", d_model=16, n_layer=1)
    assert resolve_checkpoint_folder(NAME, cache_dir=tmp_path / "c") == snap_main
    assert resolve_checkpoint_folder(NAME, revision="v2", cache_dir=tmp_path / "c") == snap_v2
    with pytest.raises(HubCheckpointError, match="revision nope"):
        resolve_checkpoint_folder(NAME, revision="nope", cache_dir=tmp_path / "c")


def test_local_folder_wins_over_a_name(tmp_path, monkeypatch, offline_cache):
    local = tmp_path / "kuleshov-group" / "caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
    write_checkpoint(local, d_model=16, n_layer=1)
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint_folder(NAME) == Path(NAME)


def test_uncached_name_fails_in_one_line_with_the_fix(offline_cache):
    with pytest.raises(HubCheckpointError) as info:
        resolve_checkpoint_folder("kuleshov-group/no-such-model")
    message = str(info.value)
    assert "\n" not in message and "huggingface-cli download kuleshov-group/no-such-model" in message
    assert "local folder" in message and "offline" in message
    assert is_user_error(info.value) and isinstance(info.value, ValueError)  # the CLI prints it in one line
    with pytest.raises(HubCheckpointError, match="does not exist"):
        resolve_checkpoint_folder("./missing/folder")


def test_load_pretrained_and_pretrained_model_take_a_name(offline_cache):
    import grelu_caduceus.models  # noqa: F401
    from grelu.model.models import CaduceusPretrainedModel

    from grelu_caduceus import load_pretrained

    _, snap = offline_cache
    by_name, by_path = load_pretrained(NAME), load_pretrained(snap)
    ids = torch.randint(7, 11, (1, 32))
    assert torch.equal(by_name(ids), by_path(ids))
    model = CaduceusPretrainedModel(n_tasks=2, pretrained_path=NAME)
    assert model(torch.zeros(1, 4, 64)).shape == (1, 2, 1)


def test_pickled_weights_load_safely_and_full_unpickling_needs_opt_in(tmp_path):
    sd, _ = write_checkpoint(tmp_path / "bin", fmt="bin", d_model=16, n_layer=1)
    loaded = read_weight_file(tmp_path / "bin" / "pytorch_model.bin")
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    # A Lightning-style checkpoint holding a Python object beyond tensors and plain containers.
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": Path("x")}, tmp_path / "weights.ckpt")
    with pytest.raises(UnsafePickleError, match="trust_pickle=True") as info:
        read_weight_file(tmp_path / "weights.ckpt")
    assert "arbitrary code" in str(info.value)
    assert torch.equal(read_weight_file(tmp_path / "weights.ckpt", trust_pickle=True)["state_dict"]["w"], torch.ones(2))


def test_cli_vep_with_an_uncached_name_prints_one_line(tmp_path, offline_cache, capsys):
    from grelu_caduceus.cli import main

    variants = tmp_path / "v.tsv"
    variants.write_text("chrom\tpos\tref\talt\nchr1\t5\tA\tC\n")
    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\nACGTACGTAC\n")
    code = main(["vep", "--model", "kuleshov-group/no-such-model", "--variants", str(variants), "--genome",
                 str(genome), "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert code == 2 and "huggingface-cli download kuleshov-group/no-such-model" in err
    assert len(err.strip().splitlines()) == 1


def test_train_config_takes_a_name(offline_cache, tmp_path, capsys):
    from grelu_caduceus.cli import main
    from grelu_caduceus.cli.train import build_lightning_model, load_config

    checked = load_config(["experiment=finetune", f"model.pretrained_path={NAME}"])
    lm = build_lightning_model(checked, n_tasks=1, seq_len=64)
    assert lm.model.embedding.backbone.config.d_model == 16
    code = main(["train", "experiment=finetune", "model.pretrained_path=kuleshov-group/no-such-model",
                 f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert code == 2 and "huggingface-cli download" in err and "Traceback" not in err
