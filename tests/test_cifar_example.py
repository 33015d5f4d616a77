"""examples/cifar10.py on a tiny fake CIFAR-10 written in the real python-pickle layout."""

import glob
import importlib.util
import math
import os
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_FILE = 20


def load_example():
    name = "topo_monitor_example_cifar10"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "examples", "cifar10.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cifar = load_example()


def write_fake_cifar(root, per_file: int = PER_FILE, seed: int = 0) -> dict[str, tuple]:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` as CIFAR-10 ships them."""
    rng = np.random.default_rng(seed)
    directory = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(directory)
    written = {}
    for name in [*cifar.TRAIN_FILES, "test_batch"]:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(per_file) % 10)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_file)],
        }
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (data, labels)
    return written


@pytest.fixture
def fake_cifar(tmp_path):
    return tmp_path / "data", write_fake_cifar(tmp_path / "data")


def test_load_cifar10_train_concatenates_the_five_batches_in_order(fake_cifar):
    root, written = fake_cifar
    ds = cifar.load_cifar10(root, train=True, normalize=False)
    x, y = ds.tensors
    assert x.shape == (5 * PER_FILE, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (5 * PER_FILE,) and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    raw = np.concatenate([written[n][0] for n in cifar.TRAIN_FILES])
    labels = np.concatenate([written[n][1] for n in cifar.TRAIN_FILES])
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each a 32×32 image row-major.
    expected = torch.from_numpy(raw.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    torch.testing.assert_close(x, expected)
    assert x[3, 1, 2, 5] == pytest.approx(raw[3, 1024 + 2 * 32 + 5] / 255.0)
    np.testing.assert_array_equal(y.numpy(), labels)
    assert set(y.tolist()) == set(range(10))


def test_load_cifar10_test_split_and_normalization(fake_cifar):
    root, written = fake_cifar
    plain = cifar.load_cifar10(root, train=False, normalize=False)
    ds = cifar.load_cifar10(root, train=False)
    x, y = ds.tensors
    assert x.shape == (PER_FILE, 3, 32, 32) and x.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), written["test_batch"][1])
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (plain.tensors[0] - mean) / std)
    # The batch directory itself is accepted as well.
    again = cifar.load_cifar10(root / "cifar-10-batches-py", train=False)
    torch.testing.assert_close(again.tensors[0], x)


def test_load_cifar10_missing_files_say_what_layout_is_expected(tmp_path, fake_cifar):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py") as info:
        cifar.load_cifar10(tmp_path / "nowhere", train=True)
    message = str(info.value)
    assert "data_batch_1" in message and "test_batch" in message and "never downloads" in message
    root, _ = fake_cifar
    os.remove(root / "cifar-10-batches-py" / "test_batch")
    cifar.load_cifar10(root, train=True)  # the training files are all there
    with pytest.raises(FileNotFoundError, match=r"missing test_batch"):
        cifar.load_cifar10(root, train=False)


def test_augment_keeps_shape_and_values():
    x = torch.rand(6, 3, 32, 32)
    out = cifar.augment(x)
    assert out.shape == x.shape
    # Every output pixel is an input pixel or zero padding.
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_main_trains_and_monitors_one_epoch_end_to_end(fake_cifar, tmp_path):
    root, _ = fake_cifar
    logdir = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few dataloader workers, small probe classes, PHdim NaN
        monitor = cifar.main(
            [
                "--data-dir",
                str(root),
                "--epochs",
                "1",
                "--logdir",
                str(logdir),
                "--samples-per-class",
                "3",
                "--batch-size",
                "10",
                "--limit-train",
                "40",
                "--limit-val",
                "10",
                "--accelerator",
                "cpu",
            ]
        )
    assert len(monitor.history) == 1
    record = monitor.history[0]
    blocks = [f"net.layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert record.blocks == [*blocks, "output"]
    assert all(math.isfinite(v) and v > 0 for v in record.values["E0_1_scaled"])
    assert len(monitor.probe) <= 30
    (history,) = glob.glob(str(logdir / "cifar10" / "version_*" / "topology_history.jsonl"))
    with open(history) as f:
        assert len(f.readlines()) == 1
    assert glob.glob(str(logdir / "cifar10" / "version_*" / "events.out.tfevents.*"))
