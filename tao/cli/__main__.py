"""``python -m tao.cli``: the same command as ``tao`` (as ``accelerate launch -m tao.cli`` runs it)."""

from tao.cli import main

main()
