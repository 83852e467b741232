"""The search presets (``*.toml``) shipped with eas: ``default``, ``cifar10``, ``densenet``, ``svhn``."""
