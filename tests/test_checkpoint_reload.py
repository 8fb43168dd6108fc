"""Fine-tuned checkpoints are self-contained: a model started from a pretrained folder (Caduceus,
HyenaDNA, or a masked LM continued from one) reloads after the folder is gone, with the fine-tuned
weights; every loader of the package goes through one function (checkpoint_files.load_lightning_checkpoint)."""

import shutil

import pytest
import pytorch_lightning as pl
import torch
from helpers import write_checkpoint
from test_hyenadna_pretrained import released_backbone, write_original

import grelu_caduceus  # noqa: F401  (registers our model classes with gReLU)
from grelu_caduceus import grelu_compat, inference
from grelu_caduceus.checkpoint_files import CheckpointFileError, load_lightning_checkpoint


def onehot(n, length, seed):
    ids = torch.randint(0, 4, (n, length), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(ids, 4).float().transpose(1, 2)


def fit_and_save(lm, path, steps=3):
    """A few real optimiser steps on CPU, then a Lightning checkpoint at ``path``."""
    x = onehot(8, 64, seed=1)
    y = torch.rand(8, lm.model_params["n_tasks"], 1, generator=torch.Generator().manual_seed(2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lm, loader)
    trainer.save_checkpoint(path)
    return lm.eval()


PRETRAINED = {
    "caduceus_ps": lambda folder: (write_checkpoint(folder, d_model=16, n_layer=2, rcps=True),
                                   dict(model_type="CaduceusPretrainedModel", n_layers=1))[1],
    "caduceus_ph": lambda folder: (write_checkpoint(folder, d_model=16, n_layer=2, rcps=False),
                                   dict(model_type="CaduceusPretrainedModel"))[1],
    "hyenadna": lambda folder: (write_original(folder, released_backbone(l_max=256), l_max=256),
                                dict(model_type="HyenaDNAPretrainedModel", n_layers=1))[1],
}


@pytest.mark.parametrize("kind", PRETRAINED)
def test_fine_tuned_checkpoint_reloads_without_the_pretrained_folder(tmp_path, kind):
    from grelu.lightning import LightningModel

    folder = tmp_path / "pretrained"
    params = {**PRETRAINED[kind](folder), "n_tasks": 2, "pretrained_path": str(folder)}
    torch.manual_seed(0)
    lm = LightningModel(model_params=dict(params), train_params={"task": "regression", "loss": "mse", "lr": 1e-2})
    before = {k: v.clone() for k, v in lm.model.embedding.state_dict().items()}
    tuned = fit_and_save(lm, tmp_path / "tuned.ckpt")
    changed = [k for k, v in tuned.model.embedding.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "fine-tuning changed no backbone weight: the test could not tell the weights apart"
    assert "backbone_config" not in tuned.model_params  # the live model_params stay as given
    shutil.rmtree(folder)

    x = onehot(3, 64, seed=5)
    with torch.no_grad():
        expected = tuned(x)
        for reloaded in (inference.load_checkpoint(tmp_path / "tuned.ckpt").eval(),
                         grelu_compat.load_checkpoint(tmp_path / "tuned.ckpt")):
            assert reloaded.model_params["pretrained_path"] == str(folder)
            torch.testing.assert_close(reloaded(x), expected, rtol=0, atol=0)


def test_masked_lm_continued_from_a_folder_reloads_without_it(tmp_path):
    from grelu_caduceus.tasks.mlm import MLMLightningModel, train_mlm

    folder = tmp_path / "pretrained"
    write_checkpoint(folder, d_model=16, n_layer=2, rcps=True)
    torch.manual_seed(0)
    lm = MLMLightningModel({"pretrained_path": str(folder)}, {"max_steps": 2, "batch_size": 4, "lr": 1e-2,
                                                              "logger": None, "progress_bar": False})
    train_mlm(lm, list(onehot(8, 64, seed=1)), None, tmp_path / "run", resume=None)
    shutil.rmtree(folder)
    reloaded = inference.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert isinstance(reloaded, MLMLightningModel)
    ids = torch.randint(7, 11, (2, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(ids), lm.eval()(ids), rtol=0, atol=0)


def test_one_loader_names_a_damaged_file_and_the_fix(tmp_path):
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(CheckpointFileError, match="cut.ckpt is truncated or corrupt.*use a complete checkpoint"):
        load_lightning_checkpoint(bad)
    with pytest.raises(CheckpointFileError, match="does not exist: fetch it"):
        inference.load_checkpoint(tmp_path / "missing.ckpt", hint="fetch it")
