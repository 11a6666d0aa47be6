"""mmlearn's Hydra configs, the package `mmlearn.conf` (`pkg://mmlearn.conf`): pyproject.toml maps this
folder onto it, so a wheel ships it and an editable install finds it here (`mmlearn.conf_dir()`)."""
