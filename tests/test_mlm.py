"""Masked-LM task: masking statistics, no loss on N, fixed validation masks, class weights, LR schedule,
checkpoint/resume, fine-tuning from an MLM checkpoint, and the demo's baselines."""


import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from grelu_caduceus.core.tokens import A_ID, MASK_ID, N_ID, T_ID, ids_to_onehot
from grelu_caduceus.tasks.mlm import IGNORE, MLMLightningModel, mask_tokens, train_mlm, warmup_cosine

TINY = dict(d_model=16, n_layer=1, rcps=True)


def random_ids(shape, n_frac=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(A_ID, T_ID + 1, shape, generator=g)
    if n_frac:
        ids[torch.rand(shape, generator=g) < n_frac] = N_ID
    return ids


# --------------------------------------------------------------------------- masking
def test_masking_statistics_and_never_n():
    ids = random_ids((16, 4096), n_frac=0.2)
    inputs, labels = mask_tokens(ids, generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE
    is_n = ids == N_ID
    assert not (chosen & is_n).any(), "N positions must never be chosen"
    assert (inputs[is_n] == N_ID).all(), "N positions must stay N"
    assert (labels[chosen] == ids[chosen]).all()
    rate = chosen.sum().item() / (~is_n).sum().item()
    assert abs(rate - 0.15) < 0.005, rate
    n_chosen = chosen.sum().item()
    as_mask = (inputs[chosen] == MASK_ID).float().mean().item()
    changed_base = ((inputs != ids) & (inputs != MASK_ID) & chosen).sum().item() / n_chosen
    kept = ((inputs == ids) & chosen).sum().item() / n_chosen
    assert abs(as_mask - 0.8) < 0.015, as_mask
    # 10% random bases, a quarter of which happen to equal the original: 7.5% changed, 12.5% kept.
    assert abs(changed_base - 0.075) < 0.01, changed_base
    assert abs(kept - 0.125) < 0.01, kept
    # Random replacements are bases, never special tokens; unchosen positions are untouched.
    replaced = chosen & (inputs != MASK_ID)
    assert ((inputs[replaced] >= A_ID) & (inputs[replaced] <= T_ID)).all()
    assert (inputs[~chosen] == ids[~chosen]).all()


def test_mask_token_counts_cover_only_the_sites_replaced_by_mask():
    model = MLMLightningModel(TINY, {"mask_prob": 0.5})
    ids = torch.randint(A_ID, T_ID + 1, (8, 256), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(7)
    loss, correct, n, correct_at_mask, n_at_mask = model.masked_loss(ids, generator=g, mask_token_counts=True)
    inputs, labels = mask_tokens(ids, 0.5, 0.8, 0.1, generator=torch.Generator().manual_seed(7))
    assert n_at_mask.item() == ((inputs == MASK_ID) & (labels != IGNORE)).sum().item()
    assert 0.7 < n_at_mask.item() / n.item() < 0.9 and correct_at_mask <= correct
    # a model that copies its input is right on every unchanged site and on no [MASK]ed one

    class CopyInput(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x, 16).float() * 10

    model.model = CopyInput()
    _, correct, n, correct_at_mask, _ = model.masked_loss(ids, generator=torch.Generator().manual_seed(7),
                                                         mask_token_counts=True)
    assert correct_at_mask.item() == 0 and correct.item() > 0


def test_all_n_batch_has_no_targets_and_finite_zero_loss():
    model = MLMLightningModel(TINY)
    ids = torch.full((2, 64), N_ID)
    loss, correct, n = model.masked_loss(ids)
    assert n.item() == 0 and correct.item() == 0
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.all(g == 0) for g in grads)


def test_validation_masks_are_deterministic():
    model = MLMLightningModel(TINY).eval()
    x = ids_to_onehot(random_ids((4, 128)))
    model.on_validation_epoch_start()
    model.validation_step(x, 0)
    first = model.val_sums.clone()
    model.on_validation_epoch_start()
    model.validation_step(x, 0)
    assert torch.equal(first, model.val_sums)
    # Another batch index gets another (fixed) mask.
    model.on_validation_epoch_start()
    model.validation_step(x, 1)
    assert not torch.equal(first, model.val_sums)


def test_class_weights_change_the_loss():
    ids = random_ids((4, 256))
    plain = MLMLightningModel(TINY)
    weighted = MLMLightningModel(TINY, {"class_weights": [5.0, 1.0, 1.0, 0.2]})
    weighted.model.load_state_dict(plain.model.state_dict())
    ones = MLMLightningModel(TINY, {"class_weights": [1.0, 1.0, 1.0, 1.0]})
    ones.model.load_state_dict(plain.model.state_dict())
    with torch.no_grad():
        losses = [m.masked_loss(ids, generator=torch.Generator().manual_seed(3))[0].item() for m in (plain, weighted, ones)]
    assert losses[0] == pytest.approx(losses[2], rel=1e-6)
    assert abs(losses[0] - losses[1]) > 1e-4
    with pytest.raises(ValueError, match="4 values"):
        MLMLightningModel(TINY, {"class_weights": [1.0, 2.0]})


def test_warmup_cosine_schedule_values():
    f = warmup_cosine(warmup_steps=10, max_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert f(110) == pytest.approx(0.1)
    assert f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# --------------------------------------------------------------------------- checkpoints and resume
class RandomWindows(Dataset):
    """Random one-hot windows; raises once ``fail_at`` items have been read (a simulated crash)."""

    def __init__(self, n, length=64, fail_at=None):
        self.n, self.length, self.fail_at, self.reads = n, length, fail_at, 0

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.reads += 1
        if self.fail_at is not None and self.reads > self.fail_at:
            raise RuntimeError("simulated crash")
        g = torch.Generator().manual_seed(index)
        return ids_to_onehot(torch.randint(A_ID, T_ID + 1, (1, self.length), generator=g))[0]


def tiny_train_params(**kw):
    params = dict(lr=1e-2, warmup_steps=2, max_steps=6, batch_size=4, checkpoint_every=100, logger=None,
                  devices="cpu", seed=0, progress_bar=False, save_best=False, val_check_interval=None)
    return {**params, **kw}


def test_interrupt_writes_last_ckpt_and_resume_continues_the_run(tmp_path):
    params = tiny_train_params()
    model = MLMLightningModel(TINY, params)
    crash = RandomWindows(64, fail_at=3 * params["batch_size"])  # dies while fetching batch 4
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_mlm(model, crash, None, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists()
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    adam_steps = {float(s["step"]) for s in state["optimizer_states"][0]["state"].values()}
    assert adam_steps == {3.0}
    assert state["lr_schedulers"][0]["last_epoch"] == 3

    resumed = MLMLightningModel(TINY, tiny_train_params())
    trainer = train_mlm(resumed, RandomWindows(64), None, tmp_path, resume="auto")
    assert trainer.global_step == 6
    optimizer = trainer.optimizers[0]
    # Optimizer state was restored (a fresh one would have taken only 3 steps) ...
    assert {float(s["step"]) for s in optimizer.state.values()} == {6.0}
    # ... and the LR schedule continued from step 3 rather than restarting.
    expected = params["lr"] * warmup_cosine(2, 6, 0.1)(6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    # The weights continued from the checkpoint: they differ from the interrupted ones.
    saved = {k[len("model."):]: v for k, v in state["state_dict"].items()}
    assert any(not torch.equal(saved[k], v) for k, v in resumed.model.state_dict().items() if k in saved)


def test_finetune_from_mlm_checkpoint(tmp_path):
    import pytorch_lightning as pl
    from grelu.data.dataset import LabeledSeqDataset
    from grelu.lightning import LightningModel

    import grelu_caduceus  # noqa: F401  (registers the model classes on gReLU)

    mlm = MLMLightningModel(TINY, tiny_train_params(max_steps=2))
    train_mlm(mlm, RandomWindows(16), None, tmp_path / "mlm")
    ckpt = tmp_path / "mlm" / "checkpoints" / "last.ckpt"
    tuned = LightningModel(
        model_params={"model_type": "CaduceusPretrainedModel", "n_tasks": 1, "pretrained_path": str(ckpt)},
        train_params={"task": "binary", "loss": "bce", "lr": 1e-3, "batch_size": 4, "num_workers": 0},
    )
    backbone = {k: v.clone() for k, v in tuned.model.embedding.backbone.state_dict().items()}
    for key, value in mlm.model.backbone.state_dict().items():
        assert torch.equal(backbone[key], value), key
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 50)) for _ in range(8)]
    data = LabeledSeqDataset(seqs, labels=np.array([0, 1] * 4, np.float32)[:, None, None], tasks=["y"])
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(tuned, tuned.make_train_loader(data))
    assert trainer.global_step == 2
    changed = tuned.model.embedding.backbone.state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in backbone.items()), "backbone should be fine-tuned"
    out = tuned(ids_to_onehot(random_ids((2, 50))))
    assert out.shape == (2, 1, 1) and torch.all((out > 0) & (out < 1))


