"""Datasets from the real on-disk formats, written here: CIFAR's python pickle batches, a
CIFAR-10.1-style .npy pair, a folder of class folders, tars of class folders; their splits,
the storage choice, the CIFAR profile, and bad input through the CLI."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import yaml
from PIL import Image

from rsb_tune.data.registry import get_dataset, load_splits
from rsb_tune.errors import DataError
from tests.conftest import assert_user_error, run_cli

N_CLASSES = 10


def write_cifar10(root, n_train=40, n_test=20, seed=0, classes=N_CLASSES):
    """CIFAR-10's python batches as torchvision reads them: data_batch_1..5, test_batch
    ({'data': uint8 (n, 3072) CHW rows, 'labels': [...]}) and batches.meta."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    per = n_train // 5
    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as f:
            labels = [int(c) for c in (np.arange(per) + (i - 1) * per) % classes]  # every class in train
            pickle.dump({"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8), "labels": labels}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "labels": [int(c) for c in np.arange(n_test) % classes]}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{c}" for c in range(classes)], "num_vis": 3072}, f)
    return root


def write_cifar100(root, n=20, classes=100):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [int(c) for c in np.arange(n) % classes]}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{c}" for c in range(classes)]}, f)
    return root


def write_npy_pair(d, n=20, classes=N_CLASSES, prefix="cifar10.1_v6"):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    np.save(d / f"{prefix}_data.npy", rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    np.save(d / f"{prefix}_labels.npy", (np.arange(n) % classes).astype(np.int64))
    return d


def write_folder(root, splits=("train", "val"), classes=("cat", "dog"), n=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def write_mnist(root, n_train=20, n_test=10):
    """MNIST's idx files (big-endian magic, dims, uint8 data) in ROOT/MNIST/raw/."""
    import struct

    rng = np.random.default_rng(5)
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
        (d / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + (np.arange(n) % 10).astype(np.uint8).tobytes())
    return root


def _images(rng, n, size=16):
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def write_hfds(root, n_train=12, n_val=6, names=("a", "b", "c")):
    """A Hugging Face DatasetDict (image + ClassLabel columns) saved with save_to_disk."""
    import datasets

    rng = np.random.default_rng(3)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})

    def split(n):
        return datasets.Dataset.from_dict({"image": _images(rng, n), "label": [i % len(names) for i in range(n)]}, features=features)

    datasets.DatasetDict({"train": split(n_train), "validation": split(n_val)}).save_to_disk(str(root))
    return root


def write_wds(root, n_train=12, n_val=6, classes=3, shards=2):
    """WebDataset shards (train-00000i.tar, validation-000000.tar) of {key}.png + {key}.cls."""
    import io

    import webdataset as wds

    rng = np.random.default_rng(4)
    root.mkdir(parents=True)
    for split, n, k in (("train", n_train, shards), ("validation", n_val, 1)):
        for s in range(k):
            with wds.TarWriter(str(root / f"{split}-{s:06d}.tar")) as w:
                for i in range(s, n, k):
                    buf = io.BytesIO()
                    _images(rng, 1)[0].save(buf, format="png")
                    w.write({"__key__": f"{split}{i:05d}", "png": buf.getvalue(), "cls": str(i % classes).encode()})
    return root


def tar_of(folder, out, arcname=None):
    with tarfile.open(out, "w") as tf:
        for p in sorted(folder.rglob("*.png")):
            tf.add(p, arcname=str(p.relative_to(folder if arcname is None else folder.parent)))
    return out


# --------------------------------------------------------------------------- formats


def test_cifar10_pickle_batches_train_and_test_as_val(tmp_path):
    root = write_cifar10(tmp_path)
    data = load_splits({"dataset": "torch/cifar10", "data_path": str(root)})
    assert data.classes == tuple(f"class{c}" for c in range(10))
    assert data.sizes() == {"n_train": 40, "n_val": 20, "n_v2": 0}
    assert data.train.decoded and data.train.images.shape == (40, 32, 32, 3) and data.train.images.dtype == np.uint8
    # the CHW rows were read as torchvision reads them: HWC with the same pixels
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        row = pickle.load(f)["data"][0]
    assert np.array_equal(data.train.images[0], row.reshape(3, 32, 32).transpose(1, 2, 0))
    d = data.describe()
    assert d["splits"]["val"]["from"].endswith("cifar-10-batches-py/test_batch")
    assert d["storage"] == "memory" and d["decoded_mb"] < 1


def test_cifar100_reads_fine_labels(tmp_path):
    data = load_splits({"dataset": "torch/cifar100", "data_path": str(write_cifar100(tmp_path))})
    assert data.num_classes == 100 and len(data.train) == 20 and data.train.labels[7] == 7


def test_md5_is_still_checked_for_a_file_of_the_real_size(tmp_path):
    """A data batch holding CIFAR-10's real 10,000 images must be the real file."""
    root = write_cifar10(tmp_path)
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((10000, 3072), dtype=np.uint8), "labels": [0] * 10000}, f)
    with pytest.raises(DataError, match="data_batch_1: md5 differs from the real CIFAR10 file's"):
        load_splits({"dataset": "torch/cifar10", "data_path": str(root)})


def test_cifar10_1_npy_pair_as_v2_and_held_out_val(tmp_path):
    root = write_cifar10(tmp_path / "c")
    v2 = write_npy_pair(tmp_path / "v2")
    cfg = {"dataset": "torch/cifar10", "data_path": str(root), "v2_path": str(v2), "val_holdout": 0.25, "val_holdout_seed": 7}
    data = load_splits(cfg)
    assert data.sizes() == {"n_train": 30, "n_val": 10, "n_v2": 20}
    assert np.array_equal(data.v2.images, np.load(v2 / "cifar10.1_v6_data.npy"))
    assert np.bincount(data.val.labels, minlength=10).tolist() == [1] * 10  # class-stratified
    held = data.describe()["val_holdout"]
    assert held == {"fraction": 0.25, "seed": 7, "unused": f"{root / 'cifar-10-batches-py'}/test_batch (kept for last)"}
    again = load_splits(cfg)
    assert np.array_equal(again.val.images, data.val.images)
    other = load_splits({**cfg, "val_holdout_seed": 8})
    assert not np.array_equal(other.val.images, data.val.images)
    # the data file itself works as v2_path too
    assert len(load_splits({**cfg, "v2_path": str(v2 / "cifar10.1_v6_data.npy")}).v2) == 20


def test_folder_and_tars_read_the_same_images(tmp_path):
    root = write_folder(tmp_path / "f", splits=("train", "val", "v2"))
    per_split_tars = tmp_path / "t"
    per_split_tars.mkdir()
    for split in ("train", "val"):
        tar_of(root / split, per_split_tars / f"{split}.tar")
    one_tar = tmp_path / "all.tar"
    with tarfile.open(one_tar, "w") as tf:
        for p in sorted(root.rglob("*.png")):
            tf.add(p, arcname=str(p.relative_to(root)))
    f, t, a = (load_splits({"dataset": "folder", "data_path": str(p)}) for p in (root, per_split_tars, one_tar))
    assert f.classes == t.classes == a.classes == ("cat", "dog")
    assert f.sizes() == a.sizes() == {"n_train": 8, "n_val": 8, "n_v2": 8} and t.sizes()["n_v2"] == 0
    for other in (t, a):
        assert np.array_equal(other.train.images, f.train.images) and np.array_equal(other.train.labels, f.train.labels)
    assert f.describe()["storage"] == "memory"


def test_over_the_budget_streams_and_reads_the_same_pixels(tmp_path):
    from rsb_tune.data.registry import SplitDataset

    root = write_folder(tmp_path, n=3, size=64)
    tar = tar_of(root / "train", tmp_path / "train.tar")
    mem = load_splits({"dataset": "folder", "data_path": str(root)})
    stream = load_splits({"dataset": "folder", "data_path": str(root), "memory_budget_mb": 0})
    assert stream.describe()["storage"] == "stream" and not stream.train.decoded
    assert "memory_budget_mb 0" in stream.describe()["why"]
    for i in range(len(mem.train)):
        assert np.array_equal(np.asarray(SplitDataset(stream.train, None).image(i)), mem.train.images[i])
    # a lazy tar source survives pickling (a Ray worker, a loader worker) after a read
    from rsb_tune.data.readers import _index_tar

    _, images, _ = _index_tar(tar)[""]
    first = np.asarray(images[0])
    assert np.array_equal(np.asarray(pickle.loads(pickle.dumps(images))[0]), first)
    c = load_splits({"dataset": "torch/cifar10", "data_path": str(write_cifar10(tmp_path / "c")), "memory_budget_mb": 0})
    assert c.describe()["storage"] == "stream" and np.array_equal(np.asarray(pickle.loads(pickle.dumps(c.val.images))[3]), load_splits({"dataset": "torch/cifar10", "data_path": str(tmp_path / "c")}).val.images[3])


@pytest.mark.parametrize("fmt", ["hfds", "wds"])
def test_hugging_face_and_webdataset_from_disk(tmp_path, fmt):
    from rsb_tune.data.registry import SplitDataset

    root = write_hfds(tmp_path / "hf") if fmt == "hfds" else write_wds(tmp_path / "wds")
    cfg = {"dataset": f"{fmt}/toy", "data_path": str(root)}
    mem = load_splits(cfg)
    assert mem.sizes() == {"n_train": 12, "n_val": 6, "n_v2": 0} and mem.num_classes == 3
    assert mem.train.decoded and mem.train.images.shape == (12, 16, 16, 3)
    assert sorted(np.bincount(mem.train.labels).tolist()) == [4, 4, 4]
    stream = load_splits({**cfg, "memory_budget_mb": 0})
    assert stream.describe()["storage"] == "stream"
    lazy = pickle.loads(pickle.dumps(stream.train))  # as a Ray or loader worker gets it
    for i in range(12):
        assert np.array_equal(np.asarray(SplitDataset(lazy, None).image(i)), mem.train.images[i])
        assert lazy.labels[i] == mem.train.labels[i]


def test_mnist_idx_files_through_timms_factory(tmp_path):
    root = write_mnist(tmp_path)
    data = load_splits({"dataset": "torch/mnist", "data_path": str(root)})
    assert data.sizes() == {"n_train": 20, "n_val": 10, "n_v2": 0} and data.num_classes == 10
    assert data.train.images.shape == (20, 28, 28, 3)  # grey, read as RGB
    raw = np.frombuffer((root / "MNIST/raw/train-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8).reshape(20, 28, 28)
    assert np.array_equal(data.train.images[..., 0], raw) and np.array_equal(data.train.images[..., 2], raw)
    assert get_dataset("torch/mnist").profile.values["hflip"] == 0.0


def test_mnist_family_through_timm_needs_its_files(tmp_path):
    with pytest.raises(DataError, match=r"no MNIST files, expected them in .*MNIST/raw; get them from torchvision.datasets.MNIST\(ROOT, download=True\)"):
        load_splits({"dataset": "torch/mnist", "data_path": str(tmp_path)})


# --------------------------------------------------------------------------- the CIFAR profile


def test_cifar_profile_resolves_a_cifar_stem_resnet_at_32px():
    import timm
    import torch

    import rsb_tune.training.models  # noqa: F401
    from rsb_tune.planning.config import resolve
    from rsb_tune.planning.recipes import get_recipe

    profile = get_dataset("torch/cifar10").profile
    assert get_dataset("torch/cifar100").profile.values == profile.values
    epochs = {r: resolve(get_recipe(r), profile).values["epochs"] for r in ("A1", "A2", "A3")}
    assert epochs == {"A1": 120, "A2": 60, "A3": 20}  # 6:3:1
    cfg = resolve(get_recipe("A2"), profile).values
    assert cfg["img_size"] == cfg["test_img_size"] == 32 and cfg["hflip"] == 0.5 and cfg["lr_resolved"] == pytest.approx(5e-3 * 0.5)
    assert set(profile.why) >= set(profile.values) - {"test_img_size"}
    model = timm.create_model(cfg["model"], num_classes=10)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)  # 32 / 8, not 32 / 32


# --------------------------------------------------------------------------- bad input, through the CLI


def _bad(tmp_path):
    c = write_cifar10(tmp_path / "c")
    f = write_folder(tmp_path / "f", classes=("a", "b"))
    diff = write_folder(tmp_path / "diff", splits=("train",), classes=("a", "b"))
    write_folder(diff, splits=("val",), classes=("a", "c"))
    broken = write_folder(tmp_path / "broken")
    (broken / "val" / "cat" / "9.png").write_bytes(b"not a png")
    v2_5 = write_npy_pair(tmp_path / "v2_5", classes=5)
    return {
        "empty root": (["--dataset", "torch/cifar10", "--data-dir", str(tmp_path / "nothing")], ["no CIFAR10 files, expected them in", "nothing/cifar-10-batches-py", "cifar-10-python.tar.gz"]),
        "unknown name": (["--dataset", "torch/cifar", "--data-dir", str(c)], ["unknown dataset 'torch/cifar'", "did you mean", "'torch/cifar10'"]),
        "classes differ": (["--data", str(diff)], [f"{diff / 'val'}/: class folders of val differ from train", "missing in val: ['b']; not in train: ['c']"]),
        "unreadable image": (["--data", str(broken)], [f"{broken / 'val' / 'cat' / '9.png'}: unreadable image"]),
        "v2 classes": (["--dataset", "torch/cifar10", "--data-dir", str(c), "--set", f"v2_path={v2_5}"], ["cifar10.1_v6_labels.npy: 5 classes", "the dataset has 10"]),
        "no root": (["--dataset", "torch/cifar10"], ["needs its root: --data-dir ROOT"]),
        "no split": (["--data", str(f / "train")], ["missing sub-folder(s) train, val"]),
        "two roots": (["--data", str(f), "--data-dir", str(c)], ["--data and --data-dir both give the dataset root"]),
    }


BAD = ["empty root", "unknown name", "classes differ", "unreadable image", "v2 classes", "no root", "no split", "two roots"]


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_line_exit_2_nothing_written(tmp_path, case):
    args, needles = _bad(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    storage = tmp_path / "store"
    proc = run_cli("seeds", "--n", "1", *args, "--storage", str(storage), cwd=tmp_path)
    assert_user_error(proc, *needles)
    assert not storage.exists() and sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_dry_run_shows_splits_storage_and_reasons(tmp_path):
    root = write_cifar10(tmp_path / "c")
    v2 = write_npy_pair(tmp_path / "v2")
    proc = run_cli("seeds", "--n", "2", "--dataset", "torch/cifar10", "--data-dir", str(root), "--set", f"v2_path={v2}", "--set", "val_holdout=0.25",
                   "--storage", str(tmp_path / "s"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "model: resnet18_cifar  # profile cifar10" in out and "epochs: 60  # recipe A2 x epoch_scale 0.2" in out
    assert "why model: timm's ResNet-18 with a CIFAR stem" in out and "why epoch_scale: 0.2 of the paper's epochs keeps A1:A2:A3 = 6:3:1" in out
    assert "split train: 30 images" in out and "split val: 10 images" in out and "split v2: 20 images from cifar10.1_v6_data.npy + cifar10.1_v6_labels.npy" in out
    assert "val held out of train: 25%, seed 0; not used:" in out and "storage: memory (0.2 MB decoded <= memory_budget_mb 2048" in out
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- real one-epoch studies


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """One-epoch, two-seed studies, one per reader: CIFAR pickles with a CIFAR-10.1 v2 (from
    memory); a folder train/ with a val.tar (streamed, through a loader worker); a Hugging Face
    dataset saved to disk; WebDataset shards."""
    tmp = tmp_path_factory.mktemp("ds")
    c = write_cifar10(tmp / "c", n_train=40, n_test=20)
    v2 = write_npy_pair(tmp / "v2", n=20)
    f = write_folder(tmp / "f", splits=("train",), n=6, size=16)
    val = write_folder(tmp / "fval", splits=("val",), n=3, size=16)
    tar_of(val / "val", f / "val.tar")
    tiny = ["--model", "test_resnet", "--epochs", "1", "--batch-size", "8", "--set", "model_kwargs={}", "--set", "eval_batch_size=16", "--set", "img_size=16", "--set", "test_img_size=16"]
    storage = tmp / "s"
    runs = {
        "cifar": ["--dataset", "torch/cifar10", "--data-dir", str(c), "--set", f"v2_path={v2}"],
        "folder": ["--data", str(f), "--set", "memory_budget_mb=0", "--set", "workers=1"],
        "hfds": ["--dataset", "hfds/toy", "--data-dir", str(write_hfds(tmp / "hf"))],
        "wds": ["--dataset", "wds/toy", "--data-dir", str(write_wds(tmp / "wds"))],
    }
    procs = {name: run_cli("seeds", "--n", "2", *args, *tiny, "--storage", str(storage), "--name", name, "--quiet") for name, args in runs.items()}
    return storage, procs


@pytest.mark.e2e
@pytest.mark.parametrize("name,storage_kind,n_v2", [("cifar", "memory", 20), ("folder", "stream", 0), ("hfds", "memory", 0), ("wds", "memory", 0)])
def test_one_epoch_study_per_format(studies, name, storage_kind, n_v2):
    import pandas as pd

    storage, procs = studies
    proc = procs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = yaml.safe_load((storage / name / "study.yaml").read_text())
    assert meta["data"]["storage"] == storage_kind and meta["data_sizes"]["n_v2"] == n_v2
    assert set(meta["data"]["splits"]) == ({"train", "val", "v2"} if n_v2 else {"train", "val"})
    epochs = pd.read_parquet(storage / name / "epochs.parquet")
    assert len(epochs) == 2 and epochs["val_top1"].notna().all()
    assert bool(epochs.get("v2_top1", pd.Series([None])).notna().all()) == bool(n_v2)
