"""The style wing (DiffSketch): the generator, CDST conditions, losses, the one-shot trainer, style save/load and
photo -> sketch."""
