"""What every ``tao`` command shares: one-line errors and exit codes, quiet libraries, --config/--set."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from tao.core.errors import InputError, ResourceError


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input: one line on stderr and exit code 2, never a traceback. Out of memory: one line, exit 1.
    Ctrl-C: how to resume."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            click.echo(f"tao: error: {exc}", err=True)
            sys.exit(2)
        except ResourceError as exc:
            if disk_full(exc):
                click.echo(f"tao: error: {DISK_FULL}", err=True)
                sys.exit(2)
            click.echo(f"tao: error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            if not disk_full(exc) and not isinstance(exc, OSError):
                raise
            if disk_full(exc):
                click.echo(f"tao: error: {DISK_FULL}", err=True)
            else:  # e.g. --run-dir names a file, or a directory we may not write
                where = f"{exc.filename}: " if exc.filename else ""
                click.echo(f"tao: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except Terminated:
            click.echo("tao: stopped (SIGTERM); run the same command again to resume", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("tao: stopped (Ctrl-C); run the same command again to resume", err=True)
            sys.exit(130)

    return wrapper


DISK_FULL = (
    "the disk is full (or a file-size limit was reached) while writing; free space, then run the same command "
    "again: finished stages are kept, the one in progress is redone"
)
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# How libraries that do not raise OSError say it: SQLite, safetensors' Rust writer, torch's zip writer
_FULL_MESSAGES = ("no space left", "file too large", "disk quota", "database or disk is full", "unexpected pos")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a write that found no room."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(m in str(exc).lower() for m in _FULL_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that ``finally`` blocks run (engine closed, lock released);
    the stage in progress is lost, its finished predecessors are on disk. A BaseException, as KeyboardInterrupt is:
    a handler that catches Exception (a user scorer's wrapper, a template check) must not swallow the stop."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def quiet_libraries() -> None:
    """Keep library chatter (load bars, experimental-feature notices) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # vLLM's engine runs in child processes, which inherit these: its start-up notices stay out of the terminal.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore")
    # bitsandbytes warns at import that an optional hub kernel package is missing; nothing to act on.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and ``--set KEY=VALUE``, as every command that reads the config takes them."""
    command = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, repeatable."
    )(command)
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path), default=None, help="YAML config file."
    )(command)


def build_config(
    path: Path | None, overrides: tuple[str, ...], model: str | None, rewards: tuple[str, ...], changes: dict
) -> Any:
    """Defaults < --config < --set, then the flags that act like --set (--model, --reward, ...)."""
    from tao.core.config_file import load_config, replace

    if model is not None:
        changes["model"] = {"name": model}
    if rewards:
        changes["reward"] = {"scorers": list(rewards)}
    return replace(load_config(path, overrides), **changes)
