"""A local Hugging Face Hub for tests: tiny random models saved the way Hub repos hold them, served on 127.0.0.1.

Five repos, each written by the library's own saver, so loading them is the operator's path exactly:

- ``atlas-test/tiny-vit``: a timm ViT written by ``timm.models.save_for_hf`` (``config.json`` with
  ``architecture`` / ``model_args`` / ``pretrained_cfg`` + ``model.safetensors``), loaded as
  ``timm.create_model("hf-hub:atlas-test/tiny-vit", pretrained=True)``;
- ``atlas-test/tiny-deit-distilled``: timm's distilled DeiT (two prefix tokens: cls + dist, Touvron et al. 2021,
  Section 5), same layout;
- ``atlas-test/tiny-bert``: ``BertModel`` + a WordPiece ``vocab.txt`` tokenizer (``save_pretrained``);
- ``atlas-test/tiny-gpt2``: ``GPT2LMHeadModel`` + a byte-level BPE (``vocab.json`` + ``merges.txt``);
- ``atlas-test/tiny-marian``: ``MarianMTModel`` + ``MarianTokenizer`` (``source.spm`` / ``target.spm``, a
  SentencePiece model trained here on a few lines, and ``vocab.json``).

:class:`LocalHub` serves them over HTTP with the Hub's file API (``HEAD``/``GET
/{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit`` and ``ETag``; 404 + ``X-Error-Code: EntryNotFound``
for files a repo lacks, which the clients treat as "optional file absent"; ``/api/models/{repo}`` for repo
info). :func:`hub_client_env` points ``huggingface_hub`` at it (``HF_ENDPOINT``) with a private cache
(``HF_HUB_CACHE``), or at the cache alone with ``HF_HUB_OFFLINE=1``. Nothing here reaches past 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import timm
import torch

from models.text.random_models import TINY_BERT, TINY_MARIAN

ORG = "atlas-test"
VIT = f"{ORG}/tiny-vit"
DEIT = f"{ORG}/tiny-deit-distilled"
BERT = f"{ORG}/tiny-bert"
GPT2 = f"{ORG}/tiny-gpt2"
MARIAN = f"{ORG}/tiny-marian"

# Tiny geometries: 32 px / patch 8 -> 4 x 4 grid; 48 px / patch 16 -> 3 x 3 grid.
VIT_ARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=10)
DEIT_ARGS = dict(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10)

CORPUS = [
    "The animal didn't cross the street because it was too tired.",
    "The quick brown fox jumps over the lazy dog.",
    "Attention is all you need: multi-head attention over every position.",
    "Das Tier überquerte die Straße nicht, weil es zu müde war.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Aufmerksamkeit ist alles, was man braucht.",
]


# --- repos ---------------------------------------------------------------------------------------------------
def save_timm(folder: Path, arch: str, model_args: dict) -> None:
    """A random timm model as ``timm.models.push_to_hf_hub`` lays it out (config.json + model.safetensors)."""
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **model_args).eval()
    save_for_hf(model, str(folder), model_args=model_args, safe_serialization=True)


def save_bert(folder: Path) -> None:
    """Random BertModel + a WordPiece tokenizer whose vocab.txt holds the corpus' words and characters."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w.strip(".,:'").lower() for line in CORPUS for w in line.split()} - {""})
    chars = sorted({c.lower() for line in CORPUS for c in line if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    vocab = list(dict.fromkeys(vocab))  # (V,) unique, order kept
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), **TINY_BERT, max_position_embeddings=128)
    BertModel(cfg).eval().save_pretrained(folder)


def save_gpt2(folder: Path) -> None:
    """Random GPT2LMHeadModel + a byte-level BPE trained on the corpus (vocab.json + merges.txt, as gpt2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    eot = "<|endoftext|>"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[eot],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = bpe.model.save(str(folder))  # vocab.json, merges.txt
    lines = Path(merges_file).read_text(encoding="utf-8").splitlines()
    merges = [tuple(m.split(" ")) for m in lines if m and not m.startswith("#")]
    vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token=eot, bos_token=eot, eos_token=eot)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    eot_id = tok.convert_tokens_to_ids(eot)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
    )
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)


def save_marian(folder: Path) -> None:
    """Random MarianMTModel + MarianTokenizer: one SentencePiece model (vocab 100) trained in process serves as
    source.spm and target.spm; vocab.json is opus-mt's shared vocabulary (</s> 0, <unk> 1, ..., <pad> last)."""
    import io

    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=buf,
        vocab_size=100,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=1,
        eos_id=0,
        bos_id=-1,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    spm_path = folder / "spm.model"
    spm_path.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]  # (V,) </s>, <unk>, then pieces
    vocab = {p: i for i, p in enumerate(pieces)}
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = MarianTokenizer(
        source_spm=str(spm_path), target_spm=str(spm_path), vocab=str(folder / "vocab.json")
    )
    spm_path.unlink()
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = MarianConfig(
        vocab_size=len(vocab),
        **TINY_MARIAN,
        max_position_embeddings=128,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["</s>"],
        decoder_start_token_id=vocab["<pad>"],
        forced_eos_token_id=vocab["</s>"],
    )
    MarianMTModel(cfg).eval().save_pretrained(folder)


def build_repos(root: Path) -> dict[str, Path]:
    """Write the five repos under ``root``; returns repo id -> folder."""
    repos = {r: root / r for r in (VIT, DEIT, BERT, GPT2, MARIAN)}
    save_timm(repos[VIT], "vit_tiny_patch16_224", VIT_ARGS)
    save_timm(repos[DEIT], "deit_tiny_distilled_patch16_224", DEIT_ARGS)
    save_bert(repos[BERT])
    save_gpt2(repos[GPT2])
    save_marian(repos[MARIAN])
    return repos


# --- the server ----------------------------------------------------------------------------------------------
def repo_commit(folder: Path) -> str:
    """A stable 40-hex "commit" for a folder: sha1 over its file names and contents."""
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@dataclass
class LocalHub:
    """The Hub's file API for ``repos`` on http://127.0.0.1:<port>; ``requests`` logs (method, path, status)."""

    repos: dict[str, Path]
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.commits = {r: repo_commit(f) for r, f in self.repos.items()}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _send(self, h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict, body: bool) -> None:
        self.requests.append((h.command, h.path, status))
        h.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(data))}.items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _missing(self, h: BaseHTTPRequestHandler, code: str, body: bool) -> None:
        data = json.dumps({"error": code}).encode()
        self._send(h, 404, data, {"X-Error-Code": code, "Content-Type": "application/json"}, body)

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        parts = unquote(urlsplit(h.path).path).strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:  # /api/models/{org}/{name}[/...]
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._missing(h, "RepoNotFound", body)
            if len(parts) >= 6 and parts[4] == "tree":  # .../tree/{rev}[/{path}]: one folder's entries
                folder = self.repos[repo].joinpath(*parts[6:])
                if not folder.is_dir():
                    return self._missing(h, "EntryNotFound", body)
                entries = [
                    {"type": "file", "path": p.relative_to(self.repos[repo]).as_posix(), "size": p.stat().st_size,
                     "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                    if p.is_file()
                    else {"type": "directory", "path": p.relative_to(self.repos[repo]).as_posix(), "oid": "0" * 40}
                    for p in sorted(folder.iterdir())
                ]  # fmt: skip
                return self._send(
                    h, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body
                )
            files = sorted(p.relative_to(self.repos[repo]).as_posix() for p in self.repos[repo].rglob("*"))
            info = {
                "id": repo,
                "modelId": repo,
                "sha": self.commits[repo],
                "private": False,
                "siblings": [{"rfilename": f} for f in files],
            }
            return self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":  # /{org}/{name}/resolve/{rev}/{path...}
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in self.repos:
                return self._missing(h, "RepoNotFound", body)
            path = self.repos[repo] / filename
            if not path.is_file():
                return self._missing(h, "EntryNotFound", body)
            data = path.read_bytes()
            headers = {
                "X-Repo-Commit": self.commits[repo],
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "Content-Type": "application/octet-stream",
            }
            return self._send(h, 200, data, headers, body)
        self._missing(h, "EntryNotFound", body)


@contextmanager
def hub_client_env(cache: Path, endpoint: str | None = None, offline: bool = False) -> Iterator[None]:
    """Point ``huggingface_hub`` (and so timm and transformers) at ``endpoint`` with the cache ``cache``, or at
    the cache alone when ``offline``. ``huggingface_hub.constants`` reads HF_ENDPOINT / HF_HUB_CACHE /
    HF_HUB_OFFLINE once at import, so the constants are set along with the environment, and both restored."""
    import pytest
    from huggingface_hub import constants, hf_api

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        mp.setattr(constants, "HF_HUB_OFFLINE", offline)
        mp.delenv("HF_TOKEN", raising=False)
        if endpoint is not None:
            mp.setenv("HF_ENDPOINT", endpoint)
            mp.setattr(constants, "ENDPOINT", endpoint)
            mp.setattr(
                constants,
                "HUGGINGFACE_CO_URL_TEMPLATE",
                endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            )
            mp.setattr(hf_api.api, "endpoint", endpoint)
        else:  # no endpoint at all: any request would go nowhere
            mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
            mp.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
            mp.setattr(
                constants,
                "HUGGINGFACE_CO_URL_TEMPLATE",
                "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}",
            )
            mp.setattr(hf_api.api, "endpoint", "http://127.0.0.1:9")
        yield


def snapshot_dirs(cache: Path) -> list[str]:
    """Repo folders in a Hub cache (``models--org--name``), as huggingface_hub writes them."""
    return sorted(p.name for p in cache.glob("models--*"))


if __name__ == "__main__":  # build once and list the files: `python tests/hub_snapshot.py /tmp/hub`
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/atlas-hub")
    for repo, folder in build_repos(root).items():
        print(repo, sorted(p.name for p in folder.iterdir()), sep="\t")
