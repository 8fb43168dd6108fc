"""``grelu-caduceus train`` as a script file: ``python train_script.py OVERRIDES``.

Lightning's DDP launcher starts the processes for the other devices by running the command that
started training again (``sys.argv``, plus the Hydra run folder). The ``grelu-caduceus`` console
script cannot be re-run that way, so ``train`` presents this file as ``sys.argv[0]`` while Hydra
runs, and the extra processes run the same ``train`` command.
"""

import sys

if __name__ == "__main__":
    from grelu_caduceus.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
