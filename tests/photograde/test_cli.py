"""The command line: every sub-command is registered, options come from their config, and only
a PhotogradeError is reported as the user's error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from photograde.cli import CommandParser, build_parser, main
from tests.support import none_imported, run_python
from vision.errors import PhotogradeError

COMMANDS = {
    "manifest check", "synth", "import-folder", "train vision", "train tabular", "train fusion",
    "cv vision", "evaluate vision", "explain", "export", "predict", "serve", "demo",
    "bundle verify", "keys create", "keys list", "keys revoke", "db upgrade", "db seed",
    "train release", "evaluate bundle", "train photocheck", "evaluate photocheck",
    "dataset export", "backtest", "bundle register", "bundle list", "bundle shadow",
    "bundle promote", "bundle rollback", "bundle retire", "score", "evaluate precision",
    "evaluate robustness",
    "train localiser", "evaluate localiser", "train return-risk",
    "evaluate return-risk",
}
TRAIN_OPTIONS = {  # shared by train vision and cv vision
    "--backbone", "--img-size", "--epochs", "--batch-size", "--accum-steps", "--lr",
    "--backbone-lr-mult", "--val-fraction", "--patience", "--freeze-backbone", "--freeze-stages",
    "--head-epochs", "--weights", "--init-from", "--no-pretrained", "--device", "--no-amp",
    "--seed", "--workers", "--cache-dir", "--quiet",
}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> dict[str, argparse.ArgumentParser]:
    """Every leaf sub-command, by its words."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(path): parser}
    out = {}
    for name, child in subs[0].choices.items():
        out.update(_commands(child, (*path, name)))
    return out


def test_every_sub_command_is_registered_with_a_handler_and_its_options():
    commands = _commands(build_parser())
    assert set(commands) == COMMANDS
    for name, parser in commands.items():
        assert isinstance(parser, CommandParser), name
        assert callable(parser.get_default("func")), name
        assert "usage: photograde " + name in parser.format_help(), name  # populates it


def test_building_the_command_line_imports_no_training_module():
    code = ("import sys\n"
            "from photograde.cli import build_parser\n"
            "p = build_parser()\n"
            "p.parse_args(['predict', '--bundle', 'b', '--front', 'f', '--back', 'b',"
            " '--device-info', 'd'])\n"
            "p.parse_args(['serve', '--port', '8001'])\n"
            "p.parse_args(['bundle', 'verify', 'b'])\n"
            + none_imported("torch", "timm", "sklearn", "training.vision_train",
                            "training.export"))
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_train_vision_options_are_the_train_config_fields():
    from training.cli import train_config
    from training.train_config import TrainConfig
    from vision.backbone import DEFAULT_BACKBONE

    parser = build_parser()
    args = parser.parse_args(["train", "vision", "--manifest", "m.csv", "--out", "run"])
    assert train_config(args) == TrainConfig(manifests=["m.csv"], out="run")
    assert args.backbone == DEFAULT_BACKBONE
    args = parser.parse_args([
        "train", "vision", "--manifest", "a.csv", "--manifest", "b.csv", "--out", "run",
        "--val-manifest", "v.csv", "--resume", "--no-pretrained", "--no-amp", "--quiet",
        "--freeze-backbone", "--weights", "w.safetensors", "--cache-dir", "cache/",
        "--img-size", "320", "--lr", "0.01", "--device", "cpu", "--grading", "ctia"])
    cfg = train_config(args)
    assert (cfg.manifests, cfg.val_manifests) == (["a.csv", "b.csv"], ["v.csv"])
    assert (cfg.pretrained, cfg.amp, cfg.progress) == (False, False, False)
    assert cfg.freeze_backbone and cfg.resume
    assert (cfg.weights, cfg.cache_dir, cfg.init_from) == ("w.safetensors", "cache", None)
    assert (cfg.img_size, cfg.lr, cfg.device, cfg.grading) == (320, 0.01, "cpu", "ctia")
    cv = parser.parse_args(["cv", "vision", "--manifest", "m.csv", "--out", "cv"])
    assert train_config(cv, manifests=["m.csv"]) == TrainConfig(manifests=["m.csv"], out="cv")
    commands = _commands(parser)
    assert _options(commands["train vision"]) == TRAIN_OPTIONS | {
        "-h", "--help", "--manifest", "--out", "--val-manifest", "--resume", "--grading"}
    assert _options(commands["cv vision"]) == TRAIN_OPTIONS | {
        "-h", "--help", "--manifest", "--out", "--folds", "--by-source", "--extra-manifest",
        "--no-probe", "--probe-only", "--grading"}


#: Run in a sub-process where ``import torch`` fails, as in a serving-only install.
NO_TORCH = "import sys\nsys.modules['torch'] = None\n"


def test_every_sub_commands_help_works_without_torch():
    code = NO_TORCH + (
        "from photograde.cli import build_parser\n"
        "from tests.photograde.test_cli import _commands\n"
        "commands = _commands(build_parser())\n"
        "for name, parser in commands.items():\n"
        "    assert 'usage: photograde ' + name in parser.format_help(), name\n"
        "print(len(commands))\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) == len(COMMANDS)
    for words in (["train", "vision"], ["cv", "vision"]):
        proc = run_python(NO_TORCH + "from photograde.cli import main\n"
                          f"main({[*words, '--help']!r})")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "--backbone BACKBONE" in proc.stdout and "tf_efficientnet_lite0" in proc.stdout


def test_a_training_command_without_torch_asks_for_the_train_extra(tmp_path: Path):
    code = NO_TORCH + ("from photograde.cli import main\n"
                       f"sys.exit(main(['train', 'vision', '--manifest', 'm.csv', '--out', "
                       f"{str(tmp_path / 'run')!r}]))\n")
    proc = run_python(code)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("photograde: error: this command needs the [train] extra "
                                  "(torch is not installed)"), proc.stderr[-2000:]


def _options(parser: CommandParser) -> set[str]:
    parser.populate()
    return {s for a in parser._actions for s in a.option_strings}


def test_a_photograde_error_is_the_users_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import serve.cli

    def fails(error: Exception):
        def run(args: argparse.Namespace) -> int:
            raise error
        return run

    monkeypatch.setattr(serve.cli, "_bundle_verify", fails(PhotogradeError("no such bundle")))
    assert main(["bundle", "verify", "b"]) == 2
    assert capsys.readouterr().err == "photograde: error: no such bundle\n"
    for bug in (RuntimeError("a bug"), ValueError("a bare ValueError is a bug too"),
                FileNotFoundError("neither is this")):
        monkeypatch.setattr(serve.cli, "_bundle_verify", fails(bug))
        with pytest.raises(type(bug), match=str(bug)):
            main(["bundle", "verify", "b"])


def test_invalid_settings_are_a_user_error(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("PHOTOGRADE_PORT", "not-a-port")
    assert main(["db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "port" in capsys.readouterr().err
    monkeypatch.setenv("PHOTOGRADE_SETTINGS_FILE", str(tmp_path / "absent.toml"))
    assert main(["keys", "list"]) == 2
    assert "PHOTOGRADE_SETTINGS_FILE" in capsys.readouterr().err
