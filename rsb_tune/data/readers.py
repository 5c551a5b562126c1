"""Datasets from local files through timm's dataset factory, their splits, and where they live.

``timm.data.create_dataset`` names the formats (timm train.py's ``--dataset NAME --data-dir
ROOT``), always with ``download=False``:

``torch/cifar10``, ``torch/cifar100``
    torchvision's readers of the python pickle batches (``cifar-10-batches-py/``,
    ``cifar-100-python/``). torchvision compares each file's md5 with the real dataset's; here
    that check is kept for every file of the real size and skipped only for files too small to
    hold the real number of images (a copy in the same format, e.g. a test's), which still go
    through torchvision's own reader.
``torch/mnist``, ``torch/fashion_mnist``, ``torch/kmnist``, ``torch/qmnist``
    ``create_dataset(name, root, split, download=False)`` as it is.
``hfds/NAME``
    A Hugging Face dataset saved with ``save_to_disk`` at ``--data-dir ROOT`` (read with the
    ``datasets`` package, the image bytes decoded as timm's hfds reader does): ``train`` as train,
    ``validation`` (or ``val``, ``valid``, ``test``) as val.
``wds/NAME``
    WebDataset shards at ``--data-dir ROOT``: ``train-*.tar`` as train, ``validation-*.tar``
    (or ``val``, ``test``) as val; each sample an image and its ``.cls`` (indexed by the
    ``webdataset`` package, read at random by member).
``folder`` (``--data PATH``)
    A root with ``train/``, ``val/`` and an optional ``v2/``, each a folder of class folders or a
    ``.tar`` of class folders (``train.tar`` ...), or one ``.tar`` holding ``train/``, ``val/``
    (and ``v2/``) of class folders; indexed by timm's folder and tar readers.

Splits are explicit: every dataset says which of its files play ``train``, ``val`` and ``v2``.
``v2_path`` adds a second test set (a CIFAR-10.1 style ``*_data.npy`` / ``*_labels.npy`` pair,
or a folder of class folders); ``val_holdout`` holds a class-stratified part of ``train`` out as
``val`` (seeded by ``val_holdout_seed``), keeping the dataset's own test set for last.

Storage: a dataset whose decoded uint8 pixels fit ``memory_budget_mb`` is decoded once per study
by the driver and trained from memory (Ray's object store shares it with every trial on a
node); a larger one streams: each trial reads and decodes through its loader workers.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tarfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rsb_tune.data.types import DataOptions
from rsb_tune.errors import DataError

__all__ = [
    "FileImages",
    "TorchImages",
    "load_torch",
    "load_folder",
    "load_hfds",
    "load_wds",
    "TarImages",
    "HfImages",
    "load_v2",
    "finish_splits",
    "TORCH_DATASETS",
]

MB = 1 << 20
_SPLIT_DIRS = ("train", "val", "v2")


# --------------------------------------------------------------------------- image sources
# A split's images are decoded uint8 arrays, or one of these: a picklable sequence whose item i
# is an RGB PIL image, opened lazily in the process that reads it (a trial or a loader worker).


def _open_rgb(fileobj, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(fileobj)
        return img.convert("RGB")  # decodes the pixels
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: unreadable image ({type(e).__name__}: {e})") from None


class FileImages:
    """Image files by path."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with open(self.paths[i], "rb") as f:
            return _open_rgb(f, self.paths[i])

    def name(self, i: int) -> str:
        return self.paths[i]

    def take(self, ix) -> "FileImages":
        return FileImages([self.paths[i] for i in ix])

    def pixel_hint(self, i: int) -> int:
        from PIL import Image

        with Image.open(self.paths[i]) as im:  # the header only
            return im.size[0] * im.size[1]


class TarImages:
    """Image members of tar files (a tar of class folders, WebDataset shards), read at random
    by (tar, member) with tarfile; each tar opened once per process, on first read."""

    def __init__(self, members: Sequence[tuple[str, str]]):
        self.members = list(members)
        self._tars: dict = {}
        self._pid = None

    def __getstate__(self):
        return {"members": self.members, "_tars": {}, "_pid": None}

    def __len__(self) -> int:
        return len(self.members)

    def _file(self, i: int):
        if self._pid != os.getpid():
            self._tars, self._pid = {}, os.getpid()
        shard, member = self.members[i]
        if shard not in self._tars:  # the members by name, once: tarfile's own lookup is a linear scan
            tf = tarfile.open(shard)
            self._tars[shard] = (tf, {m.name: m for m in tf.getmembers()})
        tf, by_name = self._tars[shard]
        return tf.extractfile(by_name[member])

    def __getitem__(self, i: int):
        return _open_rgb(self._file(i), self.name(i))

    def name(self, i: int) -> str:
        return "{}:{}".format(*self.members[i])

    def take(self, ix) -> "TarImages":
        return TarImages([self.members[i] for i in ix])

    def pixel_hint(self, i: int) -> int:
        from PIL import Image

        with Image.open(self._file(i)) as im:
            return im.size[0] * im.size[1]


class _ReaderImages:
    """Images ``indices`` (default: all ``n``) of a random-access reader that each process makes
    for itself on first read (``_make``); the reader is never pickled."""

    def __init__(self, indices: Sequence[int] | None, n: int):
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._n = n if indices is None else len(self.indices)
        self._ds = None

    def __getstate__(self):
        return {**self.__dict__, "_ds": None}

    def _get(self):
        if self._ds is None:
            self._ds = self._make()
        return self._ds

    def __len__(self) -> int:
        return self._n

    def _index(self, i: int) -> int:
        return int(self.indices[i]) if self.indices is not None else i

    def take(self, ix):
        base = self.indices if self.indices is not None else np.arange(self._n)
        part = self._copy()
        part.indices = base[np.asarray(ix, dtype=np.int64)]
        part._n = len(part.indices)
        part._ds = self._ds  # this process's reader, if made: no second read of the files
        return part

    def _copy(self):
        import copy

        ds, self._ds = self._ds, None
        try:
            return copy.copy(self)
        finally:
            self._ds = ds

    def pixel_hint(self, i: int) -> int:
        w, h = self[i].size
        return w * h


class TorchImages(_ReaderImages):
    """The images of a torchvision dataset."""

    def __init__(self, name: str, root: str, train: bool, indices: Sequence[int] | None = None, n: int = 0):
        super().__init__(indices, n)
        self.dataset, self.root, self.train = name, root, train

    def _make(self):
        return _make_torch(self.dataset, self.root, self.train)

    def __getitem__(self, i: int):
        img = self._get()[self._index(i)][0]
        return img if img.mode == "RGB" else img.convert("RGB")

    def name(self, i: int) -> str:
        return f"{self.dataset} {'train' if self.train else 'test'}[{self._index(i)}]"

    def decode_all(self) -> np.ndarray | None:
        """The whole split as uint8 (N, H, W, 3) straight from the reader's arrays, or None."""
        data = getattr(self._get(), "data", None)
        if data is None:
            return None
        data = np.asarray(data.numpy() if hasattr(data, "numpy") else data)
        if data.dtype != np.uint8 or data.ndim not in (3, 4):
            return None
        if self.indices is not None:
            data = data[self.indices]
        if data.ndim == 3:  # grayscale (MNIST family): RGB as timm's input_img_mode does
            data = np.repeat(data[..., None], 3, axis=-1)
        return np.ascontiguousarray(data)


# --------------------------------------------------------------------------- torchvision datasets

# timm name -> (torchvision class, the folder its files live in under ROOT, where to get them)
TORCH_DATASETS: Mapping[str, tuple[str, str, str]] = {
    "torch/cifar10": ("CIFAR10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extracted into ROOT"),
    "torch/cifar100": ("CIFAR100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, extracted into ROOT"),
    "torch/mnist": ("MNIST", "MNIST/raw", "torchvision.datasets.MNIST(ROOT, download=True) once on a machine that is online"),
    "torch/fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", "torchvision.datasets.FashionMNIST(ROOT, download=True) once on a machine that is online"),
    "torch/kmnist": ("KMNIST", "KMNIST/raw", "torchvision.datasets.KMNIST(ROOT, download=True) once on a machine that is online"),
    "torch/qmnist": ("QMNIST", "QMNIST/raw", "torchvision.datasets.QMNIST(ROOT, download=True) once on a machine that is online"),
}
_CIFAR_IMAGES = {"data_batch_1": 10000, "data_batch_2": 10000, "data_batch_3": 10000, "data_batch_4": 10000, "data_batch_5": 10000, "test_batch": 10000, "train": 50000, "test": 10000}
_CIFAR_ROW = 3 * 32 * 32


def _relaxed_cifar(base):
    """torchvision's CIFAR reader, its md5 checks kept for every file that could be the real one.

    A file smaller than the real file's pixel payload (its real image count x 3,072 bytes)
    cannot be the real file: it is read without the md5 check (a smaller copy in the real
    format, such as the tests write). Any other file must have the real md5."""
    from torchvision.datasets.utils import check_integrity

    class Relaxed(base):
        def _files(self):
            return [(os.path.join(self.root, self.base_folder, f), md5, f) for f, md5 in self.train_list + self.test_list]

        def _small_copy(self) -> bool:
            return any(os.path.getsize(p) < _CIFAR_IMAGES[f] * _CIFAR_ROW for p, _, f in self._files() if os.path.isfile(p))

        def _check_integrity(self) -> bool:
            for path, md5, name in self._files():
                if not os.path.isfile(path):
                    return False
                if os.path.getsize(path) >= _CIFAR_IMAGES[name] * _CIFAR_ROW and not check_integrity(path, md5):
                    raise DataError(f"{path}: md5 differs from the real {base.__name__} file's (corrupt or incomplete download)")
            return True

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not os.path.isfile(path):
                raise DataError(f"{path}: missing ({base.__name__} class names)")
            if not self._small_copy() and not check_integrity(path, self.meta["md5"]):
                raise DataError(f"{path}: md5 differs from the real {base.__name__} file's")
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Relaxed.__name__ = Relaxed.__qualname__ = f"{base.__name__}Files"
    return Relaxed


def _make_torch(name: str, root: str, train: bool):
    """The torchvision dataset ``name`` under ``root`` (nothing downloaded)."""
    cls_name, folder, how = TORCH_DATASETS[name]
    where = Path(root) / folder
    if not where.is_dir():
        raise DataError(f"--data-dir {root}: no {cls_name} files, expected them in {where}; get them from {how} (rsb-tune never downloads)")
    try:
        if name in ("torch/cifar10", "torch/cifar100"):
            import torchvision.datasets as tvd

            return _relaxed_cifar(getattr(tvd, cls_name))(root, train=train, download=False)
        from timm.data import create_dataset

        return create_dataset(name, root=root, split="train" if train else "validation", download=False)
    except DataError:
        raise
    except RuntimeError as e:  # torchvision: "Dataset not found ..." (we never download)
        raise DataError(f"--data-dir {root}: {cls_name} files missing or incomplete in {where} ({e}); get them from {how}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as e:
        raise DataError(f"{_bad_file(where, e)}: not readable as {cls_name} ({type(e).__name__}: {e})") from None


def _bad_file(where: Path, err: Exception) -> str:
    """The file of ``where`` that does not load as a pickle (else the folder)."""
    for p in sorted(where.iterdir()):
        try:
            with open(p, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:  # noqa: BLE001 - any failure names the file
            return str(p)
    return getattr(err, "filename", None) or str(where)


def load_torch(name: str, opts: DataOptions):
    """A torchvision dataset: its train split as ``train``, its test split as ``val``."""
    from rsb_tune.data.types import DatasetSplits, Split

    if not opts.root:
        raise DataError(f"dataset {name!r} needs its root: --data-dir ROOT (the folder holding {TORCH_DATASETS[name][1]}/)")
    root = str(Path(opts.root).expanduser())
    folder = TORCH_DATASETS[name][1]
    splits = {}
    for role, train in (("train", True), ("val", False)):
        ds = _make_torch(name, root, train)
        labels = np.asarray(ds.targets.numpy() if hasattr(ds.targets, "numpy") else ds.targets, dtype=np.int64)
        src = TorchImages(name, root, train, n=len(labels))
        src._ds = ds  # already made here: decode_all needs no second read
        files = [f for f, _ in getattr(ds, "train_list" if train else "test_list", [])]
        what = f"{Path(root) / folder}/{'+'.join(files) if files else ('train' if train else 'test') + ' files'}"
        splits[role] = Split(images=src, labels=labels, source=what)
        classes = tuple(str(c) for c in ds.classes)
    return DatasetSplits(name, classes, splits["train"], splits["val"], None, info={"root": root})


# --------------------------------------------------------------------------- folders and tars


def _index_folder(path: Path):
    """(classes, FileImages, labels) of a folder of class folders, by timm's folder reader."""
    from timm.data import create_dataset

    try:
        ds = create_dataset("", root=str(path), search_split=False)
    except RuntimeError:  # timm: "Found 0 images in subfolders of ..."
        from timm.data.readers.img_extensions import get_img_extensions

        raise DataError(f"{path}: no images (extensions {', '.join(get_img_extensions())})") from None
    except OSError as e:
        raise DataError(f"{path}: {e}") from None
    reader = ds.reader
    if "" in reader.class_to_idx:
        raise DataError(f"{path}: images outside class folders (expected {path}/CLASS/IMAGE)")
    paths, labels = zip(*reader.samples)
    return tuple(reader.class_to_idx), FileImages(paths), np.asarray(labels, dtype=np.int64)


def _index_tar(path: Path, prefix: str | None = None):
    """{split: (classes, TarImages, labels)} of a tar of class folders, by timm's tar reader;
    with ``prefix=None`` the whole tar is one split ``""``, else members are grouped by their
    first folder (``train/``, ``val/``, ``v2/``)."""
    from timm.data import create_dataset
    from timm.utils.misc import natural_key

    try:
        ds = create_dataset("", root=str(path), cache_tarinfo=False)
    except (tarfile.TarError, OSError, AssertionError, ValueError) as e:
        raise DataError(f"{path}: not a readable tar of class folders ({type(e).__name__}: {e})") from None
    groups: dict[str, list[tuple[str, str]]] = {}
    for (ti, _parent, _child), _ in zip(ds.reader.samples, ds.reader.targets):
        parts = ti.name.split("/")
        if len(parts) < 2:
            raise DataError(f"{path}: {ti.name} is outside class folders (expected CLASS/IMAGE in the tar)")
        split = parts[0] if prefix is not None else ""
        if prefix is not None and len(parts) < 3:
            raise DataError(f"{path}: {ti.name} is outside split folders (expected train/CLASS/IMAGE, val/CLASS/IMAGE)")
        groups.setdefault(split, []).append((ti.name, parts[-2]))
    out = {}
    for split, members in groups.items():
        classes = tuple(sorted({c for _, c in members}, key=natural_key))
        index = {c: i for i, c in enumerate(classes)}
        out[split] = (classes, TarImages([(str(path), m) for m, _ in members]), np.asarray([index[c] for _, c in members], dtype=np.int64))
    return out


def _same_classes(path, name: str, classes, ref) -> None:
    if tuple(classes) != tuple(ref):
        only_ref = sorted(set(ref) - set(classes))
        only_here = sorted(set(classes) - set(ref))
        raise DataError(f"{path}: class folders of {name} differ from train: missing in {name}: {only_ref or 'none'}; not in train: {only_here or 'none'}")


def load_folder(opts: DataOptions):
    """``--data PATH``: a folder root with train/, val/, optional v2/ (folders or .tar files),
    or one .tar holding train/, val/ and optional v2/."""
    from rsb_tune.data.types import DatasetSplits, Split

    if not opts.root:
        raise DataError("dataset 'folder' needs a path: --data PATH")
    root = Path(opts.root).expanduser()
    found: dict[str, tuple] = {}
    if root.is_file() and root.suffix == ".tar":
        found = {k: (*v, f"{root}:{k}/") for k, v in _index_tar(root, prefix="split").items() if k in _SPLIT_DIRS}
        missing = [s for s in ("train", "val") if s not in found]
        if missing:
            raise DataError(f"--data {root}: no {', '.join(f'{s}/' for s in missing)} in the tar (expected train/, val/ and optional v2/ of class folders)")
    elif root.is_dir():
        present = {n: root / n if (root / n).is_dir() else root / f"{n}.tar" for n in _SPLIT_DIRS if (root / n).is_dir() or (root / f"{n}.tar").is_file()}
        missing = [s for s in ("train", "val") if s not in present]
        if missing:
            raise DataError(f"--data {root}: missing sub-folder(s) {', '.join(missing)} (expected train/, val/ and optional v2/, each a folder or a .tar of class folders)")
        for name, p in present.items():
            found[name] = (*_index_tar(p)[""], str(p)) if p.suffix == ".tar" else (*_index_folder(p), f"{p}/")
    else:
        raise DataError(f"--data {root}: no such directory or .tar file")
    classes = found["train"][0]
    splits = {}
    for name, (cls, images, labels, where) in found.items():
        _same_classes(where, name, cls, classes)
        splits[name] = Split(images=images, labels=labels, source=where)
    return DatasetSplits("folder", tuple(classes), splits["train"], splits["val"], splits.get("v2"), info={"root": str(root)})


# --------------------------------------------------------------------------- Hugging Face datasets

_HF_VAL = ("validation", "val", "valid", "test")


class HfImages(_ReaderImages):
    """The images of one split of a Hugging Face dataset saved with ``save_to_disk`` (its arrow
    files memory-mapped by each process)."""

    def __init__(self, path: str, split: str | None, image_key: str, indices: Sequence[int] | None = None, n: int = 0):
        super().__init__(indices, n)
        self.path, self.split, self.image_key = path, split, image_key

    def _make(self):
        return _hf_split(_hf_load(self.path), self.split).cast_column(self.image_key, _hf_image_feature())

    def __getitem__(self, i: int):
        import io

        cell = self._get()[self._index(i)][self.image_key]
        if cell.get("bytes"):
            return _open_rgb(io.BytesIO(cell["bytes"]), self.name(i))
        return _open_rgb(cell["path"], self.name(i))

    def name(self, i: int) -> str:
        return f"{self.path} {self.split or ''}[{self._index(i)}]"


def _hf_image_feature():
    import datasets

    return datasets.Image(decode=False)  # as timm's reader: the bytes, decoded by the caller


def _hf_load(path: str):
    try:
        import datasets
    except ImportError:
        raise DataError("hfds/ datasets need the Hugging Face datasets package: pip install 'rsb-tune[hfds]'") from None
    try:
        return datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"--data-dir {path}: not a Hugging Face dataset saved with save_to_disk ({type(e).__name__}: {e})") from None


def _hf_split(ds, split: str | None):
    return ds if split is None else ds[split]


def load_hfds(name: str, opts: DataOptions, image_key: str = "image", label_key: str = "label"):
    """``hfds/NAME --data-dir ROOT``: a Hugging Face dataset saved with ``save_to_disk`` at ROOT
    (a DatasetDict): its ``train`` split as train, ``validation`` (or ``val``, ``valid``,
    ``test``) as val, ``v2`` when present; the image column ``image``, labels ``label``."""
    from rsb_tune.data.types import DatasetSplits, Split

    if not opts.root:
        raise DataError(f"dataset {name!r} needs its root: --data-dir ROOT (a Hugging Face dataset saved with save_to_disk)")
    root = str(Path(opts.root).expanduser())
    if not Path(root).exists():
        raise DataError(f"--data-dir {root}: no such directory (expected a Hugging Face dataset saved with save_to_disk; rsb-tune never downloads)")
    dd = _hf_load(root)
    names = list(getattr(dd, "keys", lambda: [])())
    if "train" not in names:
        raise DataError(f"--data-dir {root}: no 'train' split (splits: {', '.join(names) or 'none: a single Dataset, save a DatasetDict'})")
    val = next((s for s in _HF_VAL if s in names), None)
    if val is None:
        raise DataError(f"--data-dir {root}: no val split (one of {', '.join(_HF_VAL)}; splits: {', '.join(names)})")
    splits, classes = {}, None
    for role, split in (("train", "train"), ("val", val), ("v2", "v2" if "v2" in names else None)):
        if split is None:
            continue
        ds = dd[split]
        for key in (image_key, label_key):
            if key not in ds.features:
                raise DataError(f"{root} [{split}]: no column {key!r} (columns: {', '.join(ds.features)})")
        feat = ds.features[label_key]
        labels = np.asarray(ds.with_format("numpy")[label_key], dtype=np.int64)
        cls = tuple(feat.names) if hasattr(feat, "names") else tuple(str(c) for c in range(int(labels.max()) + 1))
        if classes is None:
            classes = cls
        _same_classes(f"{root} [{split}]", split, cls, classes)
        splits[role] = Split(images=HfImages(root, split, image_key, n=len(labels)), labels=labels, source=f"{root} [{split}]")
    info = {"root": root}
    unused = [s for s in names if s not in (val, "train", "v2")]
    if unused:
        info["unused_splits"] = unused
    return DatasetSplits(name, classes, splits["train"], splits["val"], splits.get("v2"), info=info)


# --------------------------------------------------------------------------- WebDataset shards

_WDS_IMAGE = ("jpg", "jpeg", "png", "webp", "bmp")
_WDS_VAL = ("validation", "val", "test")


def _wds_shards(root: Path, split: str) -> list[str]:
    shards = sorted(root.glob(f"{split}-*.tar")) or sorted((root / split).glob("*.tar"))
    return [str(p) for p in shards]


def _wds_index(shards: Sequence[str]):
    """(members, labels) of WebDataset shards: each sample's image member and its ``.cls``,
    grouped by the webdataset package's own tar iterator."""
    try:
        import webdataset as wds
    except ImportError:
        raise DataError("wds/ datasets need the webdataset package: pip install 'rsb-tune[wds]'") from None
    members, labels = [], []
    for shard in shards:
        try:
            for sample in wds.WebDataset(shard, shardshuffle=False, empty_check=False):
                key = sample["__key__"]
                ext = next((e for e in _WDS_IMAGE if e in sample), None)
                if ext is None or "cls" not in sample:
                    raise DataError(f"{shard}: sample {key!r} lacks an image ({'/'.join(_WDS_IMAGE)}) or a .cls label (has {', '.join(k for k in sample if not k.startswith('__'))})")
                members.append((shard, f"{key}.{ext}"))
                labels.append(int(sample["cls"].decode().strip()))
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - a shard that does not read names itself
            raise DataError(f"{shard}: not a readable WebDataset shard ({type(e).__name__}: {e})") from None
    return members, np.asarray(labels, dtype=np.int64)


def load_wds(name: str, opts: DataOptions):
    """``wds/NAME --data-dir ROOT``: WebDataset shards ``ROOT/train-*.tar`` (or
    ``ROOT/train/*.tar``) as train, ``validation``/``val``/``test`` shards as val, ``v2``
    shards when present; each sample an image and its ``.cls`` class index."""
    from rsb_tune.data.types import DatasetSplits, Split

    if not opts.root:
        raise DataError(f"dataset {name!r} needs its root: --data-dir ROOT (a folder of WebDataset shards)")
    root = Path(opts.root).expanduser()
    train = _wds_shards(root, "train")
    val_name = next((v for v in _WDS_VAL if _wds_shards(root, v)), None)
    if not train or val_name is None:
        raise DataError(f"--data-dir {root}: no {'train' if not train else 'val'} shards (expected train-*.tar and validation-*.tar, val-*.tar or test-*.tar, or train/*.tar ...)")
    splits = {}
    for role, split in (("train", "train"), ("val", val_name), ("v2", "v2" if _wds_shards(root, "v2") else None)):
        if split is None:
            continue
        shards = _wds_shards(root, split)
        members, labels = _wds_index(shards)
        if not members:
            raise DataError(f"{shards[0]}: no samples")
        splits[role] = Split(images=TarImages(members), labels=labels, source=f"{root}/{split} shards ({len(shards)})")
    n_classes = int(splits["train"].labels.max()) + 1
    for role, sp in splits.items():
        extra = sorted(set(sp.labels.tolist()) - set(splits["train"].labels.tolist()))
        if extra:
            raise DataError(f"{sp.source}: classes {extra} are not in train")
    return DatasetSplits(name, tuple(str(c) for c in range(n_classes)), splits["train"], splits["val"], splits.get("v2"), info={"root": str(root)})


# --------------------------------------------------------------------------- v2, held-out val, storage


def _npy_pair(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        data = sorted(path.glob("*_data.npy"))
        if len(data) != 1:
            raise DataError(f"v2_path {path}: expected one *_data.npy with its *_labels.npy (CIFAR-10.1: cifar10.1_v6_data.npy), found {len(data)}")
        path = data[0]
    labels = path.with_name(path.name.replace("_data.npy", "_labels.npy"))
    if not path.name.endswith("_data.npy") or not labels.is_file():
        raise DataError(f"v2_path {path}: expected a *_data.npy file next to its *_labels.npy")
    return path, labels


def _load_npy(path: Path, what: str, **kw) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, **kw)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not readable as {what} ({type(e).__name__}: {e})") from None


def load_v2(path: str, classes: Sequence[str]):
    """A second test set: a CIFAR-10.1-style .npy pair (uint8 N x H x W x 3 and N labels) or a
    folder of class folders (the train split's classes)."""
    from rsb_tune.data.types import Split

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"v2_path {p}: no such file or directory")
    if p.is_dir() and not any(p.glob("*_data.npy")):
        cls, images, labels = _index_folder(p)
        _same_classes(p, "v2", cls, classes)
        return Split(images=images, labels=labels, source=f"{p}/")
    data_file, labels_file = _npy_pair(p)
    images = _load_npy(data_file, "uint8 images (N, H, W, 3)", mmap_mode="r")
    labels = _load_npy(labels_file, "integer labels (N,)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{data_file}: expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_file}: expected {images.shape[0]} integer labels, got {labels.dtype} {labels.shape}")
    n_cls = len(np.unique(labels))
    if labels.min() < 0 or labels.max() >= len(classes) or n_cls != len(classes):
        raise DataError(f"{labels_file}: {n_cls} classes (labels {labels.min()}..{labels.max()}), the dataset has {len(classes)}")
    return Split(images=np.ascontiguousarray(images), labels=labels.astype(np.int64), source=f"{data_file.name} + {labels_file.name}")


def _holdout(data, fraction: float, seed: int):
    """Hold a class-stratified ``fraction`` of train out as val (the dataset's val unused)."""
    from sklearn.model_selection import train_test_split

    from rsb_tune.data.types import Split

    tr = data.train
    idx = np.arange(len(tr))
    try:
        keep, held = train_test_split(idx, test_size=fraction, stratify=tr.labels, random_state=seed)
    except ValueError as e:
        raise DataError(f"val_holdout {fraction}: cannot hold out a stratified part of {tr.source or 'train'} ({e})") from None
    keep, held = np.sort(keep), np.sort(held)

    def part(ix, label):
        return Split(images=_take(tr.images, ix), labels=tr.labels[ix], source=f"{tr.source} ({label})")

    info = {**data.info, "val_holdout": {"fraction": fraction, "seed": seed, "unused": f"{data.val.source} (kept for last)"}}
    pct = f"{fraction:.0%}"
    return dataclasses.replace(data, train=part(keep, f"{1 - fraction:.0%} kept, seed {seed}"), val=part(held, f"{pct} held out, seed {seed}"), info=info)


def _take(images, ix):
    if isinstance(images, np.ndarray):
        return images[ix]
    if isinstance(images, list):
        return [images[i] for i in ix]
    return images.take(ix)


def _decoded_bytes(images, sample: int = 32) -> int:
    """uint8 RGB bytes of the decoded split: exact for arrays, else estimated from up to
    ``sample`` image headers spread over the split."""
    if isinstance(images, np.ndarray):
        return int(images.nbytes)
    if isinstance(images, list):
        return int(sum(a.nbytes for a in images))
    n = len(images)
    if n == 0:
        return 0
    picks = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(int))
    hint = getattr(images, "pixel_hint", None)
    if hint is None:
        return 0
    pixels = []
    for i in map(int, picks):
        try:
            pixels.append(hint(i))
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - a header that does not parse names its file
            raise DataError(f"{images.name(i)}: unreadable image ({type(e).__name__}: {e})") from None
    return int(float(np.mean(pixels)) * 3 * n)


def _decode(images) -> np.ndarray | list:
    """All images of a split as uint8 HWC arrays (one array when they share a size)."""
    if isinstance(images, (np.ndarray, list)):
        return images
    fast = getattr(images, "decode_all", None)
    arrays = fast() if fast is not None else None
    if arrays is not None:
        return arrays
    out = []
    for i in range(len(images)):
        out.append(np.asarray(images[i], dtype=np.uint8))
    if out and all(a.shape == out[0].shape for a in out):
        return np.stack(out)
    return out


def finish_splits(data, opts: DataOptions, *, decode: bool = True):
    """The splits a study trains on: ``v2_path`` added, ``val_holdout`` applied, checked, and
    decoded into memory when they fit ``memory_budget_mb`` (else left to stream)."""
    if opts.v2_path:
        data = dataclasses.replace(data, v2=load_v2(opts.v2_path, data.classes), info={**data.info, "v2_path": str(Path(opts.v2_path).expanduser())})
    if opts.val_holdout > 0:
        data = _holdout(data, opts.val_holdout, opts.val_holdout_seed)
    splits = {k: s for k, s in (("train", data.train), ("val", data.val), ("v2", data.v2)) if s is not None}
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"{s.source or name}: the {name} split is empty")
        if s.labels.max() >= data.num_classes or s.labels.min() < 0:
            raise DataError(f"{s.source or name}: labels outside 0..{data.num_classes - 1}")
    budget = opts.memory_budget_mb * MB
    estimate = sum(_decoded_bytes(s.images) for s in splits.values())
    in_memory = estimate <= budget
    if in_memory and decode:
        decoded = {name: dataclasses.replace(s, images=_decode(s.images)) for name, s in splits.items()}
        estimate = sum(_decoded_bytes(s.images) for s in decoded.values())
        in_memory = estimate <= budget
        if in_memory:
            data = dataclasses.replace(data, **decoded)
    storage = {
        "storage": "memory" if in_memory else "stream",
        "decoded_mb": round(estimate / MB, 1),
        "memory_budget_mb": opts.memory_budget_mb,
        "why": (
            f"{estimate / MB:.1f} MB decoded <= memory_budget_mb {opts.memory_budget_mb}: decoded once by the driver, shared by every trial of a node through Ray's object store"
            if in_memory
            else f"{estimate / MB:.1f} MB decoded > memory_budget_mb {opts.memory_budget_mb}: streamed, each trial reads and decodes every epoch "
            + (f"through {opts.workers} persistent loader workers (pinned memory on CUDA)" if opts.workers else "in its own process (workers 0: --set workers=N decodes in N loader processes)")
        ),
    }
    return dataclasses.replace(data, info={**data.info, **storage})
