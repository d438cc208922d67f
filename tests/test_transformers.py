"""clrfind.transformers with the real transformers: a tiny BERT built from a config (nothing downloaded) through
`transformers.Trainer`, its suggested schedule then trained with by the same Trainer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is built from a config
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

import torch  # noqa: E402

import clrfind  # noqa: E402
import clrfind.transformers  # noqa: E402

CONFIG = {
    "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "max_position_embeddings": 16, "num_labels": 2,
}  # fmt: skip


class Tokens(torch.utils.data.Dataset):
    """Token ids made in code; the label says whether the first token is in the upper half of the vocabulary."""

    def __init__(self, n: int = 256, seed: int = 0) -> None:
        self.ids = torch.randint(4, 64, (n, 12), generator=torch.Generator().manual_seed(seed))
        self.labels = (self.ids[:, 0] >= 34).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": self.labels[i],
        }


def _bert() -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))


def _trainer(tmp_path: Path, **args) -> transformers.Trainer:
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, report_to="none", use_cpu=True,
        save_strategy="no", disable_tqdm=True, **args,
    )  # fmt: skip
    return transformers.Trainer(model=_bert(), args=arguments, train_dataset=Tokens())


def test_the_range_test_runs_the_trainers_model_loss_and_optimizer_and_restores_them(tmp_path) -> None:
    trainer = _trainer(tmp_path, num_train_epochs=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, steps=60)
    assert result.bounds is not None and result.bounds.usable, result.bounds
    assert result.optimizer.name == "AdamW"  # what create_optimizer builds from the TrainingArguments
    assert result.steps_per_epoch == 16  # 256 samples in batches of 16
    assert result.clip_grad_norm == 1.0  # clipped as trainer.train() clips (max_grad_norm defaults to 1.0)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.optimizer is None  # trainer.train() builds its own, as it would have

    # The suggested schedule as the Trainer's scheduler: one cycle over its 2 epochs.
    trainer.optimizer, trainer.lr_scheduler = clrfind.transformers.optimizers_for(trainer, result)
    assert type(trainer.lr_scheduler).__name__ == "OneCycleLR" and trainer.lr_scheduler.total_steps == 32
    trainer.train()
    assert trainer.state.global_step == 32 and trainer.lr_scheduler.last_epoch == 32


def test_a_failing_loss_is_named_in_the_trainers_terms(tmp_path) -> None:
    from clrfind.errors import SetupError

    trainer = _trainer(tmp_path)
    trainer.compute_loss = lambda model, inputs, **kwargs: model(**inputs).logits  # not a scalar
    with pytest.raises(SetupError, match=r"trainer\.compute_loss\(model, batch\) returned a loss of shape"):
        clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, steps=20)


def test_the_readme_example_runs(tmp_path, monkeypatch) -> None:
    """The README's Hugging Face example, as written, on the tiny BERT and its data."""
    readme = (REPO / "README.md").read_text()
    example = readme.split("### Hugging Face", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope = {"model": _bert(), "train_set": Tokens(n=64)}  # 4 steps an epoch: a quick fit
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["result"].bounds.usable and scope["trainer"].state.global_step > 0


def test_the_bar_follows_the_trainers_and_save_writes_the_results(tmp_path, progress_seen) -> None:
    trainer = _trainer(tmp_path)  # disable_tqdm=True
    clrfind.transformers.range_test(trainer, steps=20, verify_bounds=False, save=tmp_path / "lr")
    assert progress_seen == [False]
    assert {p.name for p in (tmp_path / "lr").iterdir()} == {
        "range_test.json",
        "range_test.png",
        "schedule.yaml",
    }
    clrfind.transformers.range_test(
        trainer, steps=20, verify_bounds=False, progress=True
    )  # the caller's wins
    assert progress_seen == [False, True]


def test_the_range_test_is_told_the_trainers_length(tmp_path) -> None:
    trainer = _trainer(tmp_path, num_train_epochs=20)
    result = clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, verify_bounds=False)
    assert result.training == clrfind.TrainingLength(epochs=20, steps_per_epoch=16)
    assert result.planned_steps == 320  # as long as the training, which optimizers_for fits the schedule to
    assert clrfind.transformers.optimizers_for(trainer, result)[1].total_steps == 320


def test_verify_on_val_judges_the_trials_on_the_eval_dataset(tmp_path) -> None:
    from clrfind.errors import SetupError, UsageError

    trainer = _trainer(tmp_path)  # no eval_dataset
    with pytest.raises(
        SetupError, match=r"^clrfind\.transformers\.range_test: verify_on 'val' judges"
    ) as info:
        clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, steps=60, verify_on="val")
    assert info.value.hint == "give the Trainer an eval_dataset, or use verify_on='auto'"
    trainer.eval_dataset = {"a": Tokens(32, seed=1), "b": Tokens(32, seed=2)}
    with pytest.raises(
        UsageError, match=r"^2 eval datasets \(a, b\): the range test judges its self-check on one"
    ):
        clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, steps=60, verify_on="val")
    for one in (Tokens(64, seed=1), {"only": Tokens(64, seed=1)}):  # a dataset, or a dict of one by its name
        trainer.eval_dataset = one
        result = clrfind.transformers.range_test(trainer, min_lr=1e-5, max_lr=1.0, steps=60, verify_on="val")
        assert result.verification is not None and result.verification.judged_on == "the validation data"
