"""A small user package: an NNX CNN (Flax's MNIST example, shrunk) and a linen MLP with a ``train`` flag."""
