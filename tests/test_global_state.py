"""Global state is the caller's: importing the package, and gReLU's LightningModel methods on our
models, leave environment variables, thread counts and float32 matmul precision as they were.

gReLU 1.1.0 calls ``torch.set_float32_matmul_precision("medium")`` in train/tune/predict/test/embed
and never restores it; on CPUs with AMX that makes every later float32 matmul bfloat16. The tests
below read the precision *during* each call (a forward hook) as well as after it, so they fail on any
CPU, not only on those where the lost precision shows in the numbers.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import grelu_caduceus  # noqa: F401
from grelu_caduceus.core.precision import float32_matmul_precision, precision_state


def _run_python(code: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("first", ["", "import torch, grelu.lightning, grelu.model.models; "])
def test_import_changes_no_environment_variable_thread_count_or_precision(first):
    # Third-party imports (torch, Lightning, pyarrow) set variables of their own: they come first
    # in the second case, so that only what our modules do is compared.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        f"import json, os; {first}"
        "state = lambda: (dict(os.environ), __import__('torch').get_num_threads() if 'torch' in __import__('sys').modules "
        "else None, __import__('torch').get_float32_matmul_precision() if 'torch' in __import__('sys').modules else None); "
        "before = state(); import grelu_caduceus; "
        + ("import grelu_caduceus.models, grelu_caduceus.core, grelu_caduceus.training; " if first else "")
        + "after = state(); "
        "print(json.dumps([k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)] "
        "+ ([] if before[1:] == after[1:] else ['threads/precision'])))"
    )
    assert json.loads(_run_python(code, env)) == []


def test_import_loads_no_torch_so_entry_points_can_configure_openmp():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import sys, grelu_caduceus, grelu_caduceus.cli; print('torch' in sys.modules)"
    assert _run_python(code, env) == "False"


def test_cli_sets_passive_openmp_waiting_only_for_its_own_process_and_keeps_a_users_value():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import os; from grelu_caduceus.cli import use_passive_openmp_waiting as f; f(); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _run_python(code, env) == "PASSIVE"
    assert _run_python(code, {**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_precision_scope_restores_legacy_and_per_backend_settings():
    before = precision_state()
    with float32_matmul_precision("medium"):
        assert torch.get_float32_matmul_precision() == "medium"
    assert precision_state() == before
    with float32_matmul_precision():
        torch.set_float32_matmul_precision("medium")  # whatever the block does is undone
    assert precision_state() == before
    with pytest.raises(ValueError, match="highest, high, medium"):
        with float32_matmul_precision("tf32"):
            pass


# --------------------------------------------------------------------------- gReLU's methods
def _seqs(n=16, length=96, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def _model(model_type="CaduceusModel", **train):
    from grelu.lightning import LightningModel

    torch.manual_seed(0)
    params = {"model_type": model_type, "n_tasks": 1}
    if model_type == "CaduceusModel":
        params.update(d_model=16, n_layer=1, rcps=True, final_pool_func="avg")
    else:  # a gReLU model
        params.update(n_conv=2, stem_channels=8, channel_init=8, final_pool_func="avg")
    return LightningModel(model_params=params,
                          train_params={"task": "binary", "loss": "bce", "max_epochs": 1, "batch_size": 8,
                                        "lr": 1e-3, "checkpoint": True, **train})


def _record_precision(lm):
    """A forward hook that records the legacy precision and oneDNN's matmul setting at each call."""
    seen = []
    lm.model.register_forward_hook(
        lambda *_: seen.append((torch.get_float32_matmul_precision(),
                                getattr(torch.backends.mkldnn.matmul, "fp32_precision", None))))
    return seen


@pytest.mark.parametrize("caller", ["highest", "high"])
def test_grelu_lightning_methods_keep_the_callers_precision_during_and_after(tmp_path, monkeypatch, caller):
    from grelu.data.dataset import LabeledSeqDataset, SeqDataset

    from grelu_caduceus import grelu_compat

    monkeypatch.chdir(tmp_path)
    seqs = _seqs()
    labels = np.random.default_rng(1).integers(0, 2, (len(seqs), 1, 1)).astype(np.float32)
    lm = _model()
    seen = _record_precision(lm)
    with float32_matmul_precision(caller):
        expected = precision_state()
        expected_inside = (caller, torch.backends.mkldnn.matmul.fp32_precision)
        calls = {
            "train_on_dataset": lambda: lm.train_on_dataset(LabeledSeqDataset(seqs, labels=labels, tasks=["t"]),
                                                            LabeledSeqDataset(seqs, labels=labels, tasks=["t"])),
            "predict_on_dataset": lambda: lm.predict_on_dataset(SeqDataset(seqs), devices="cpu"),
            "test_on_dataset": lambda: lm.test_on_dataset(LabeledSeqDataset(seqs, labels=labels, tasks=["t"])),
            "embed_on_dataset": lambda: lm.embed_on_dataset(SeqDataset(seqs)),
            "tune_on_dataset": lambda: lm.tune_on_dataset(LabeledSeqDataset(seqs, labels=labels, tasks=["t"]),
                                                          LabeledSeqDataset(seqs, labels=labels, tasks=["t"]),
                                                          final_pool_func="avg"),
        }
        assert set(calls) == set(grelu_compat.PRECISION_SETTING_METHODS)
        for name, call in calls.items():
            seen.clear()
            call()
            assert precision_state() == expected, f"{name} left the precision changed"
            if name != "embed_on_dataset":  # embed calls the embedding, not the whole model
                assert seen and set(seen) == {expected_inside}, f"{name} computed with {set(seen)}"


def test_predictions_inside_grelu_equal_a_float32_forward(tmp_path, monkeypatch):
    from grelu.data.dataset import SeqDataset

    from grelu.sequence.format import strings_to_one_hot

    monkeypatch.chdir(tmp_path)
    seqs = _seqs(32, 128)
    lm = _model()
    preds = np.asarray(lm.predict_on_dataset(SeqDataset(seqs), devices="cpu")).reshape(-1)
    with torch.no_grad():
        direct = torch.sigmoid(lm.model.eval()(strings_to_one_hot(seqs))).numpy().reshape(-1)
    np.testing.assert_allclose(preds, direct, rtol=0, atol=1e-6)


def test_grelus_own_models_leak_nothing_either(tmp_path, monkeypatch):
    from grelu.data.dataset import LabeledSeqDataset, SeqDataset

    monkeypatch.chdir(tmp_path)
    seqs = _seqs()
    labels = np.zeros((len(seqs), 1, 1), np.float32)
    lm = _model("ConvModel")
    seen = _record_precision(lm)
    before = precision_state()
    lm.train_on_dataset(LabeledSeqDataset(seqs, labels=labels, tasks=["t"]),
                        LabeledSeqDataset(seqs, labels=labels, tasks=["t"]))
    lm.predict_on_dataset(SeqDataset(seqs))
    assert precision_state() == before
    assert {p for p, _ in seen} == {before[0]}  # on CPU gReLU's "medium" is never applied


def test_reduced_precision_only_on_cuda_only_in_training_only_where_asked():
    import inspect

    from grelu_caduceus import grelu_compat
    from grelu_caduceus.training import training_precision

    # our Trainer builders: the run's matmul_precision on CUDA, nothing on CPU
    assert training_precision({"devices": "cpu", "matmul_precision": "high"}) is None
    assert training_precision({"devices": 1, "matmul_precision": "high"}) == "high"
    assert training_precision({"devices": 1}) is None
    assert training_precision({"devices": 1, "accelerator": "cpu", "matmul_precision": "medium"}) is None
    with pytest.raises(ValueError, match="matmul_precision"):
        training_precision({"devices": 1, "matmul_precision": "tf32"})

    # gReLU's methods on our models: training on CUDA where asked; never inference, never CPU
    def precision(lm, method, **arguments):
        signature = inspect.signature(getattr(type(lm), method).__wrapped__)
        bound = signature.bind_partial(lm, **arguments)
        return grelu_compat.call_precision(lm, method, bound)

    ours_cpu, ours_gpu = _model(matmul_precision="high"), _model(devices=0, matmul_precision="high")
    assert precision(ours_cpu, "train_on_dataset") is None
    assert precision(ours_gpu, "train_on_dataset") == "high"
    assert precision(_model(devices=0), "train_on_dataset") is None
    assert precision(ours_gpu, "predict_on_dataset", devices=0) is None
    assert precision(ours_gpu, "embed_on_dataset", device=0) is None
    # gReLU's own models keep gReLU's choice (TF32) on CUDA only
    theirs = _model("ConvModel", devices=0)
    assert precision(theirs, "train_on_dataset") == "medium"
    assert precision(theirs, "predict_on_dataset", devices=0) == "medium"
    assert precision(theirs, "predict_on_dataset", devices="cpu") is None
